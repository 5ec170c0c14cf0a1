"""`aisle worker` refits with search's encoder adaptation on (`[search] adapt = true` in its pipeline file): a refit
fine-tunes the encoder on the store's searches followed by clicks, carts and purchases as `aisle train --adapt` does,
carries the serving version's fine-tune forward when the log has too few pairs, and says which in the decision."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from aisle.bundle import Bundle
from aisle.cli import app
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.registry import Registry
from aisle.store import open_store

runner = CliRunner()
PIPELINE = {"rounds": 10, "sources": [{"key": "itemknn", "model": "itemknn", "kind": "i2i", "decay": 0.7},
                                      {"key": "trending", "model": "trending", "kind": "trending"}]}
# the fine-tune kept to seconds (a shared CPU), as in test_search_adapt: 8 steps of 32 triplets
SEARCH = {"adapt": True, "min_pairs": 50, "max_pairs": 256, "batch_size": 32, "max_seq_length": 24}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A DuckDB store with the older 80% of a synthetic shop's events (the rest to append between refits) and the
    worker's pipeline files: adapting, adapting with a `min_pairs` no log reaches, and not adapting."""
    root = tmp_path_factory.mktemp("worker-adapt")
    s = generate(SyntheticConfig(n_items=300, n_users=150, n_events=9_000, seed=3))
    events = s.events.sort("timestamp")
    cut = int(events.height * 0.8)
    events.slice(cut).write_parquet(root / "later.parquet")
    with open_store(root / "shop.duckdb") as store:
        store.upsert_items(s.items)
        store.upsert_users(s.users)
        store.append_events(events.slice(0, cut))
    for name, search in (("adapt", SEARCH), ("few", {**SEARCH, "min_pairs": 100_000}), ("off", None)):
        body = {"pipeline": PIPELINE, **({"search": search} if search else {})}
        (root / f"{name}.json").write_text(json.dumps(body))
    return {"root": root}


def _refit(shop: dict[str, Path], pipeline: str) -> tuple[str, dict]:
    """`aisle worker --once refit` with that pipeline file; (the version it published, its decision)."""
    root = shop["root"]
    env = {"AISLE_CACHE": str(root / "cache"), "AISLE_WORKER__PIPELINE": str(root / f"{pipeline}.json"),
           "AISLE_WORKER__HOLDOUT_EVENTS": "800",
           "AISLE_WORKER__LATENCY_BUDGET_MS": "5000"}  # a shared 2-core machine; the budget is not under test
    r = runner.invoke(app, ["worker", "--bundle", str(root / "registry"), "--store", str(root / "shop.duckdb"),
                            "--once", "refit"], env=env)
    assert r.exit_code in (0, 3), r.output  # 3: refused by the gate, which still leaves its decision
    assert "not applied by the worker" not in r.output
    version = json.loads((root / "registry" / "worker.json").read_text())["version"]
    decision = Registry(root / "registry").decision(version)
    assert decision is not None and decision.kind == "refit"
    return version, decision.to_dict()


def _append_later(shop: dict[str, Path], part: int) -> None:
    """Half `part` (0 or 1) of the newer events, so each refit has events its baseline never saw to be gated on."""
    later = pl.read_parquet(shop["root"] / "later.parquet")
    half = later.height // 2
    with open_store(shop["root"] / "shop.duckdb") as store:
        store.append_events(later.slice(part * half, half if part == 0 else None))


def test_refits_adapt_carry_forward_and_say_which(shop: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISLE_CACHE", str(shop["root"] / "cache"))  # Bundle.load below reads the same cache
    registry = shop["root"] / "registry"

    # 1. enough (query, clicked item) pairs: the refit fine-tunes the encoder, and the version serves with it
    first, decision = _refit(shop, "adapt")
    encoder = decision["extra"]["search_encoder"]
    assert encoder["adapted"] and not encoder["carried"] and encoder["pairs"] == SEARCH["max_pairs"], encoder
    assert "search encoder: fine-tuned on 256 pairs" in decision["reason"]
    assert decision["promoted"], decision["reason"]  # nothing served before: promoted on its health checks
    adapted = Bundle.load(registry / "versions" / first).search
    assert adapted is not None and adapted.encoder_name == encoder["encoder"]
    assert adapted.encoder_name.startswith("all-MiniLM-L6-v2-ft-")
    assert adapted.search("wireless headphones").hits  # the health checks searched it too

    # 2. too few pairs for min_pairs: the serving version's fine-tune is carried forward, not dropped
    _append_later(shop, 0)
    second, decision = _refit(shop, "few")
    encoder = decision["extra"]["search_encoder"]
    assert not encoder["adapted"] and encoder["carried"], encoder
    assert encoder["encoder"] == adapted.encoder_name
    assert f"the previous fine-tune {adapted.encoder_name} carries forward" in decision["reason"]
    assert Bundle.load(registry / "versions" / second).search.encoder_name == adapted.encoder_name  # type: ignore[union-attr]
    listed = runner.invoke(app, ["bundles", "list", "--registry", str(registry), "--json"])
    assert listed.exit_code == 0 and "carries forward" in listed.output, listed.output

    # 3. adaptation off: what `aisle train` without --adapt builds, the packaged encoder
    _append_later(shop, 1)
    _third, decision = _refit(shop, "off")
    assert "search_encoder" not in decision["extra"]
    assert Bundle.load(registry / "versions" / _third).search.encoder_name == "all-MiniLM-L6-v2"  # type: ignore[union-attr]


def test_adapt_without_dense_is_refused_with_a_message(shop: dict[str, Path]) -> None:
    root = shop["root"]
    r = runner.invoke(app, ["worker", "--bundle", str(root / "nowhere"), "--store", str(root / "shop.duckdb"),
                            "--once", "refit"],
                      env={"AISLE_WORKER__PIPELINE": str(root / "adapt.json"), "AISLE_WORKER__DENSE": "false"})
    assert r.exit_code == 2 and "needs [worker] dense = true" in " ".join(r.output.split()), r.output
