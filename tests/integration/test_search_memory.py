"""`aisle train` with `[search] memory = true` on the synthetic store builds search's memory from the store's own
searches followed by clicks, carts and purchases; the bundle saves and serves it, and held-out searches rank no worse
than without it (the default)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import polars as pl
import pytest
from typer.testing import CliRunner

from aisle.bundle import Bundle
from aisle.cli import app
from aisle.search import evaluate as ev
from aisle.search.engine import SearchEngine
from aisle.search.memory import MIN_LOGGED_QUERIES
from tests.redisserver import free_port
from tests.searchshop import SOURCES, write_time_split_shop
from tests.serving import aisle_process, wait_ready

# one xdist worker for the module: its module-scoped fixture is then built once, not once per worker
pytestmark = pytest.mark.xdist_group("integration_search_memory")

runner = CliRunner()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Path]:
    """A store split in time: the bundles learn from the first 80% of events, the rest are held-out searches."""
    root = tmp_path_factory.mktemp("memory")
    monkeypatch_module.setenv("AISLE_CACHE", str(root / "cache"))
    write_time_split_shop(root)
    out = {"root": root}
    for name, search in (("memory", {"memory": True}), ("plain", {})):  # off unless asked for
        config = root / f"{name}.json"
        config.write_text(json.dumps({"pipeline": {"sources": SOURCES}, "search": search}))
        r = runner.invoke(app, ["train", f"aisle:{root / 'shop'}", "--out", str(root / name), "--config",
                                str(config)])
        assert r.exit_code == 0, r.output
        out[name] = root / name
    return out


def _held_out_ndcg(engine: SearchEngine, held_out: pl.DataFrame) -> float:
    """NDCG@10 of the bundle's search (fusion, memory, reranker: what `search` serves) on the later searches."""
    judged = ev.judged_queries(ev.judgments_from_events(held_out), engine)
    rankings = [engine.item_rows([h.item_id for h in engine.search(j.query, page_size=10).hits]) for j in judged]
    return float(ev.metrics(rankings, judged)["ndcg@10"])


def test_train_builds_the_memory_from_the_search_log(shop: dict[str, Path]) -> None:
    events = pl.read_parquet(shop["root"] / "shop" / "events.parquet")
    logged = ev.judgments_from_events(events)["query"].n_unique()
    assert logged >= MIN_LOGGED_QUERIES
    engine = Bundle.load(shop["memory"]).search
    assert engine is not None and engine.memory is not None and engine.reranker is not None
    assert len(engine.memory) == logged
    what = json.loads((shop["memory"] / "manifest.json").read_text())["metrics"]["parts"]["search"]["what"]
    assert f"search memory={logged:,} logged searches" in what
    plain = Bundle.load(shop["plain"]).search
    assert plain is not None and plain.memory is None and plain.reranker is not None


def test_held_out_searches_rank_no_worse_with_the_memory(shop: dict[str, Path]) -> None:
    held_out = pl.read_parquet(shop["root"] / "held_out.parquet")
    with_memory = _held_out_ndcg(Bundle.load(shop["memory"]).search, held_out)
    without = _held_out_ndcg(Bundle.load(shop["plain"]).search, held_out)
    print(f"held-out NDCG@10: memory {with_memory:.4f}, without {without:.4f}")  # shown with -s
    assert with_memory >= without - 0.01, f"held-out NDCG@10 with memory {with_memory:.4f} vs {without:.4f}"


def test_a_bad_memory_setting_is_refused_with_a_message(shop: dict[str, Path]) -> None:
    bad = shop["root"] / "bad.json"
    bad.write_text(json.dumps({"search": {"memory": "yes"}}))
    r = runner.invoke(app, ["train", f"aisle:{shop['root'] / 'shop'}", "--out", str(shop["root"] / "nope"),
                            "--config", str(bad)])
    said = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and "[search] memory must be true or false" in said and "Traceback" not in said, said


def test_the_bundle_serves_search_with_its_memory(shop: dict[str, Path]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = shop["root"] / "serve.log"
    engine = Bundle.load(shop["memory"]).search
    query = engine.memory.queries[0]
    local = [h.item_id for h in engine.search(query, page_size=10).hits]
    with aisle_process(["serve", "--bundle", str(shop["memory"]), "--port", str(port)], log,
                       AISLE_CACHE=str(shop["root"] / "cache")) as proc:
        wait_ready(url, proc, output=log.read_text)
        r = httpx.get(f"{url}/search", params={"q": query, "page_size": 10}, timeout=60)
        assert r.status_code == 200, r.text
        assert [h["item_id"] for h in r.json()["hits"]] == local
