"""`aisle train --adapt` on the synthetic store: the search encoder is fine-tuned from the store's own searches
followed by clicks, carts and purchases, the bundle serves it, and held-out searches rank no worse."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import polars as pl
import pytest
from typer.testing import CliRunner

from aisle.bundle import Bundle
from aisle.cli import app
from aisle.optimize.onnx import INT8_TAG
from aisle.search import evaluate as ev
from aisle.search.engine import SearchEngine
from tests.redisserver import free_port
from tests.searchshop import SOURCES, write_time_split_shop
from tests.serving import aisle_process, wait_ready

# one xdist worker for the module: its module-scoped fixture is then built once, not once per worker
pytestmark = pytest.mark.xdist_group("integration_search_adapt")

runner = CliRunner()
# small and few steps (the CPU is shared): 8 steps of 32 (query, clicked item, BM25 hard negative) triplets
SEARCH = {"min_pairs": 50, "max_pairs": 256, "batch_size": 32, "max_seq_length": 24, "lr": 5e-5}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Path]:
    """A store split in time: the bundles learn from the first 80% of events, the rest are held-out searches."""
    root = tmp_path_factory.mktemp("adapt")
    monkeypatch_module.setenv("AISLE_CACHE", str(root / "cache"))  # encoders and vectors of this test only
    write_time_split_shop(root)
    config = root / "adapt.json"
    config.write_text(json.dumps({"pipeline": {"sources": SOURCES}, "search": SEARCH}))
    few = root / "few.json"
    few.write_text(json.dumps({"pipeline": {"sources": SOURCES}, "search": {**SEARCH, "min_pairs": 100_000}}))
    out = {"root": root, "config": config, "few": few}
    for name, flag, cfg in (("adapted", "--adapt", config), ("packaged", "--no-adapt", config),
                            ("few", "--adapt", few)):
        r = runner.invoke(app, ["train", f"aisle:{root / 'shop'}", "--out", str(root / name), "--config", str(cfg),
                                flag])
        assert r.exit_code == 0, r.output
        (root / f"{name}.txt").write_text(r.output)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _held_out_ndcg(engine: SearchEngine, held_out: pl.DataFrame) -> float:
    """NDCG@10 of the bundle's search (fusion + its reranker) on the searches after the time cut."""
    judged = ev.judged_queries(ev.judgments_from_events(held_out), engine)
    prep = ev.prepare(engine, [j.query for j in judged])
    rankings = [ev.apply(engine.reranker, p) if engine.reranker is not None else p.rows for p in prep]
    return float(ev.metrics(rankings, judged)["ndcg@10"])


def test_train_adapts_the_encoder_from_the_search_log(shop: dict[str, Path]) -> None:
    manifest = json.loads((shop["adapted"] / "manifest.json").read_text())
    part = manifest["metrics"]["parts"]["search_encoder"]
    assert part["adapted"] and part["pairs"] == SEARCH["max_pairs"], part
    engine = Bundle.load(shop["adapted"]).search
    assert engine is not None and engine.encoder_name == part["encoder"]
    assert engine.encoder_name.startswith("all-MiniLM-L6-v2-ft-")
    search = next(p for p in shop["adapted"].iterdir() if (p / "encoder" / "modules.json").exists())
    assert sorted(f.name for f in (search / "encoder-onnx").glob("*.onnx")) == [
        f"{part['encoder']}-{INT8_TAG}.onnx", f"{part['encoder']}.onnx"]
    assert Bundle.load(shop["packaged"]).search.encoder_name == "all-MiniLM-L6-v2"
    assert "search_encoder" not in json.loads((shop["packaged"] / "manifest.json").read_text())["metrics"]["parts"]


def test_held_out_searches_rank_no_worse_with_the_adapted_encoder(shop: dict[str, Path]) -> None:
    held_out = pl.read_parquet(shop["root"] / "held_out.parquet")
    adapted = _held_out_ndcg(Bundle.load(shop["adapted"]).search, held_out)
    packaged = _held_out_ndcg(Bundle.load(shop["packaged"]).search, held_out)
    print(f"held-out NDCG@10: adapted {adapted:.4f}, packaged {packaged:.4f}")  # shown with -s
    assert adapted >= packaged - 0.01, f"held-out NDCG@10 adapted {adapted:.4f} vs packaged {packaged:.4f}"


def test_too_few_pairs_keep_the_packaged_encoder_and_say_so(shop: dict[str, Path]) -> None:
    said = " ".join((shop["root"] / "few.txt").read_text().split())
    part = json.loads((shop["few"] / "manifest.json").read_text())["metrics"]["parts"]["search_encoder"]
    assert not part["adapted"] and "fewer than min_pairs=100,000" in part["what"]
    assert "fewer than min_pairs=100,000" in said and "packaged encoder serves" in said
    assert Bundle.load(shop["few"]).search.encoder_name == "all-MiniLM-L6-v2"


def test_adapt_without_dense_is_refused_with_a_message(shop: dict[str, Path]) -> None:
    r = runner.invoke(app, ["train", f"aisle:{shop['root'] / 'shop'}", "--out", str(shop["root"] / "nope"),
                            "--adapt", "--no-dense"])
    assert r.exit_code == 2 and "needs --dense" in " ".join(r.output.split()) and "Traceback" not in r.output
    r = runner.invoke(app, ["train", f"aisle:{shop['root'] / 'shop'}", "--out", str(shop["root"] / "nope"),
                            "--config", str(_bad_config(shop["root"]))])
    said = " ".join(r.output.replace("│", " ").split())  # the message as words, whatever width the box wrapped it at
    assert r.exit_code == 2 and "[search] has unknown parameter epohcs" in said, said


def _bad_config(root: Path) -> Path:
    path = root / "bad.json"
    path.write_text(json.dumps({"search": {"adapt": True, "epohcs": 2}}))
    return path


def test_the_bundle_serves_search_with_the_adapted_encoder(shop: dict[str, Path]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = shop["root"] / "serve.log"
    name = Bundle.load(shop["adapted"]).search.encoder_name
    query = ev.judgments_from_events(pl.read_parquet(shop["root"] / "held_out.parquet"))["query"][0]
    with aisle_process(["serve", "--bundle", str(shop["adapted"]), "--port", str(port)], log,
                       AISLE_CACHE=str(shop["root"] / "serve-cache")) as proc:
        wait_ready(url, proc, output=log.read_text)
        stats = httpx.get(f"{url}/api/stats", timeout=30).json()
        assert stats["catalog"]["search_encoder"] == name
        r = httpx.get(f"{url}/search", params={"q": query}, timeout=60)
        assert r.status_code == 200 and r.json()["hits"], r.text
    # the server used the ONNX exports shipped in the bundle: it exported nothing into its own cache
    assert not list((shop["root"] / "serve-cache").rglob("*.onnx"))
