"""The worker learns a ranker from a real store's impressions: a DuckDB store holding a shop's events and the lists
a simulated month of shoppers was served (epsilon-random, with propensities) and what they clicked; a refit with
`ranker = "impressions"` trains it, gates it like any refit, and its decision (what `aisle bundles list` shows)
carries the off-policy estimate against the serving ranker; a gate that fails refuses it; too few lists leave the
combiner ranking."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from aisle.bundle import Bundle
from aisle.config import load_settings
from aisle.pipeline import PipelineConfig, SourceSpec
from aisle.registry import Decision, Registry
from aisle.serve import create_app
from aisle.simulate import WorldConfig, build_world, make_policy, simulate
from aisle.store import open_store
from tests.workers import run_job

# one xdist worker for the module: its module-scoped fixture is then built once, not once per worker
pytestmark = pytest.mark.xdist_group("integration_impression_ranker")

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))
COMBINER = PipelineConfig(sources=SOURCES, rounds=10)
IMPRESSIONS = PipelineConfig(sources=SOURCES, rounds=10, ranker="impressions")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store with a shop's events and a log of served lists and reactions, and a registry serving a combiner
    refit of it."""
    root = tmp_path_factory.mktemp("implearn")
    with build_world(WorldConfig(n_items=200, n_users=150, n_events=5_000, seed=5, new_items=0),
                     pipeline=COMBINER) as world:
        res = simulate(world, make_policy("epsilon:pipeline:0.5", world, seed=5), 1500, k=8, seed=5, batch=25)
        with open_store(root / "shop.duckdb") as store:
            store.upsert_items(world.dataset.items)
            store.upsert_users(world.dataset.users)
            store.append_events(world.dataset.events)
            store.append_events(res.events)
            assert store.append_impressions(res.impressions).inserted == res.impressions.height
    assert run_job(_settings(root, root / "registry"), pipeline=COMBINER).decision.promoted  # type: ignore[union-attr]
    return {"root": root}


def _settings(root: Path, registry: Path, **extra: str):  # type: ignore[no-untyped-def]
    env = {"AISLE_WORKER__DENSE": "false", "AISLE_WORKER__HOLDOUT_EVENTS": "400",
           "AISLE_WORKER__LATENCY_BUDGET_MS": "2000", "AISLE_WORKER__IMPRESSION_RANKER_MIN": "200", **extra}
    return load_settings(None, env=env, bundle=registry, store=str(root / "shop.duckdb"))


def _refit(served: dict[str, Path], tmp_path: Path, **env: str) -> tuple[Path, Decision]:
    registry = tmp_path / "registry"
    shutil.copytree(served["root"] / "registry", registry)
    decision = run_job(_settings(served["root"], registry, **env), pipeline=IMPRESSIONS).decision
    assert decision is not None
    return registry, decision


def _bundles_list(registry: Path) -> list[dict]:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-m", "aisle", "bundles", "list", "--registry", str(registry), "--json"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_a_refit_trains_it_from_the_stores_impressions_and_the_decision_carries_the_off_policy_estimate(
        served: dict[str, Path], tmp_path: Path) -> None:
    registry, decision = _refit(served, tmp_path)
    newest = _bundles_list(registry)[-1]
    assert newest["decision"] == json.loads(json.dumps(decision.to_dict()))  # what the list shows is the record
    extra = newest["decision"]["extra"]
    learned = extra["impression_ranker"]
    assert learned["trained"] and learned["served_lists"] >= 200 and learned["debiased"]
    assert 20 < learned["labelled_lists"] < learned["served_lists"] and learned["clicked_rows"] > 0
    ope = extra["off_policy"]
    assert ope["lists"] > 20 and ope["reward"] == "click"
    for side in ("candidate", "serving"):
        for estimator in ("SNIPS", "DR"):
            e = ope[side][estimator]
            assert e["low"] <= e["value"] <= e["high"]  # DR's may dip below 0: it corrects a reward model
        assert 0 <= ope[side]["SNIPS"]["value"] <= 1 and ope[side]["matched_rows"] > 0
    assert "off-policy click rate" in newest["decision"]["reason"]
    assert "ndcg@10" in newest["decision"]["candidate"]  # the same gate as any refit
    version = newest["version"]
    if newest["decision"]["promoted"]:
        assert Registry(registry).current() == version
        bundle = Bundle.load(Registry(registry).path(version), search=False)
        assert bundle.pipeline is not None and bundle.pipeline.ranker == "impressions"
    else:
        assert Registry(registry).current() != version


def test_a_failed_gate_refuses_it_with_the_estimate_on_record(served: dict[str, Path], tmp_path: Path) -> None:
    registry, _ = _refit(served, tmp_path, AISLE_WORKER__LATENCY_BUDGET_MS="0.001")
    newest = _bundles_list(registry)[-1]
    assert not newest["decision"]["promoted"]
    assert "health checks failed" in newest["decision"]["reason"]
    assert newest["decision"]["extra"]["off_policy"]["candidate"]["SNIPS"]["value"] >= 0
    assert Registry(registry).current() != newest["version"]


def test_too_few_served_lists_leave_the_combiner_ranking(served: dict[str, Path], tmp_path: Path) -> None:
    registry, _ = _refit(served, tmp_path, AISLE_WORKER__IMPRESSION_RANKER_MIN="1000000")
    newest = _bundles_list(registry)[-1]
    learned = newest["decision"]["extra"]["impression_ranker"]
    assert not learned["trained"] and "fewer than impression_ranker_min" in learned["reason"]
    bundle = Bundle.load(Registry(registry).path(newest["version"]), search=False)
    assert bundle.pipeline is not None and bundle.pipeline.impression_ranker is None
    assert bundle.pipeline.ranker != "impressions"


def test_once_promoted_it_serves_and_a_refresh_keeps_it(served: dict[str, Path], tmp_path: Path) -> None:
    registry, decision = _refit(served, tmp_path, AISLE_WORKER__TOLERANCE="1.0")  # the NDCG@10 gate is not under test
    assert decision.promoted, decision.reason
    with open_store(served["root"] / "shop.duckdb", read_only=True) as store:
        later = store.events().sort("timestamp").tail(60)
        user = later["user_id"][0]
    copy = tmp_path / "shop.duckdb"
    shutil.copy(served["root"] / "shop.duckdb", copy)
    with open_store(copy) as store:  # a day later the same shoppers come back
        assert store.append_events(later.with_columns(pl.col("timestamp") + timedelta(days=1),
                                                      pl.lit(None, pl.String).alias("event_id"))).inserted == 60
    settings = load_settings(None, env={"AISLE_WORKER__DENSE": "false", "AISLE_WORKER__LATENCY_BUDGET_MS": "2000"},
                             bundle=registry, store=str(copy))
    outcome = run_job(settings, "refresh", pipeline=IMPRESSIONS)
    assert outcome.kind == "refresh" and outcome.decision is not None and outcome.decision.promoted
    current = Registry(registry).current()
    assert current == outcome.version
    bundle = Bundle.load(Registry(registry).path(current), search=False)
    assert bundle.pipeline is not None and bundle.pipeline.ranker == "impressions"
    with TestClient(create_app(load_settings(None, env={}, bundle=registry))) as client:
        resp = client.get(f"/users/{user}/recommendations", params={"k": 5})
        assert resp.status_code == 200 and len(resp.json()["items"]) == 5


def test_the_same_from_a_postgresql_store(served: dict[str, Path], tmp_path: Path) -> None:
    """The worker reads the impression log through the store interface: PostgreSQL gives the same lists."""
    from tests.pgserver import fresh_database, postgres_server

    with postgres_server() as server:
        url = fresh_database(server, "implearn")
        with open_store(served["root"] / "shop.duckdb", read_only=True) as duck, open_store(url) as pg:
            pg.upsert_items(duck.items())
            pg.upsert_users(duck.users())
            pg.append_events(duck.events())
            pg.append_impressions(duck.impressions())
            lists = duck.impressions()["request_id"].n_unique()
        settings = load_settings(None, env={"AISLE_WORKER__DENSE": "false", "AISLE_WORKER__HOLDOUT_EVENTS": "400",
                                            "AISLE_WORKER__LATENCY_BUDGET_MS": "2000",
                                            "AISLE_WORKER__IMPRESSION_RANKER_MIN": "200"},
                                 bundle=tmp_path / "registry", store=url)
        decision = run_job(settings, pipeline=IMPRESSIONS).decision
    assert decision is not None
    learned = decision.extra["impression_ranker"]
    assert learned["trained"] and 200 <= learned["served_lists"] < lists
    # nothing served yet: no serving ranker to estimate against, and the decision says so
    assert decision.extra["off_policy"]["lists"] == 0 and "nothing serving" in decision.extra["off_policy"]["note"]
