"""The exploration loop for real: a server following a registry explores, its impressions and the clicks that name
them reach the store, `aisle worker`'s refresh learns from them, and the next version every replica loads carries
the new state (and a refit keeps it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from fastapi.testclient import TestClient

from aisle.bundle import Bundle
from aisle.config import load_settings
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.pipeline import PipelineConfig, SourceSpec
from aisle.registry import Registry
from aisle.serve import create_app
from aisle.store import open_store
from aisle.worker import Worker

ENV = {"AISLE_WORKER__DENSE": "false", "AISLE_WORKER__HOLDOUT_EVENTS": "500",
       "AISLE_WORKER__LATENCY_BUDGET_MS": "5000",  # a shared 2-core machine; the budget is not under test here
       "AISLE_EXPLORE__ENABLED": "true", "AISLE_EXPLORE__SHARE": "1.0", "AISLE_EXPLORE__SLOTS": "[2]",
       "AISLE_EXPLORE__COLD_EVENTS": "5",  # no item launches here: the items with few events are the cold ones
       "AISLE_EXPLORE__POLICY": "thompson",
       "AISLE_IMPRESSIONS_FLUSH_S": "60"}
PIPELINE = PipelineConfig(sources=(SourceSpec("itemknn", "itemknn", "i2i", decay=0.7),
                                   SourceSpec("trending", "trending", "trending")), rounds=10)


def test_the_worker_learns_what_the_servers_explored_and_the_next_version_carries_it(tmp_path: Path) -> None:
    s = generate(SyntheticConfig(n_items=200, n_users=100, n_events=5_000, seed=11))
    with open_store(tmp_path / "shop.duckdb") as store:
        store.upsert_items(s.items)
        store.upsert_users(s.users)
        store.append_events(s.events)
    settings = load_settings(None, env=ENV, bundle=tmp_path / "registry", store=str(tmp_path / "shop.duckdb"))
    worker = Worker(settings, pipeline=PIPELINE)
    worker.start()
    try:
        assert worker.run("refit").decision.promoted  # type: ignore[union-attr]
        registry = Registry(tmp_path / "registry")
        first = registry.current()
        now = datetime.now(UTC).isoformat()
        clicked: dict[str, int] = {}
        with TestClient(create_app(settings)) as client:
            services = client.app.state.services
            for user in s.users["user_id"].to_list()[:60]:
                body = client.get(f"/users/{user}/recommendations", params={"k": 5}).json()
                explored = [c for c in body["items"] if c["explanation"]["type"] == "exploration"]
                assert len(explored) == 1 and explored[0]["propensity"] < 1
                item = explored[0]["item_id"]
                if len(clicked) < 8 or item in clicked:  # the shoppers like a few of the explored items
                    clicked[item] = clicked.get(item, 0) + 1
                    ok = client.post("/events", json={"events": [
                        {"user_id": user, "item_id": item, "event_type": "click", "timestamp": now,
                         "request_id": body["request_id"]}]})
                    assert ok.status_code == 200, ok.text
            services.impressions.flush()
            services.sink.flush()
        assert worker.run("refresh").decision.promoted  # type: ignore[union-attr]
        second = registry.current()
        assert second != first
        state = Bundle.load(registry.path(second), search=False).explore
        assert state is not None and state.updates == 1
        shown, rewards = state.counts(list(clicked))
        assert rewards.tolist() == [float(n) for n in clicked.values()]
        assert (shown > 0).all() and state.counts(state.item_ids)[0].sum() > shown.sum()  # unclicked ones too
        # a server loading the new version explores from its state
        with TestClient(create_app(settings)) as client:
            served = client.app.state.services.runtime.explore_state
            assert served.updates == 1 and served.counts(list(clicked))[1].tolist() == rewards.tolist()
        # a refit keeps what exploration learned
        assert worker.run("refit").decision is not None
        refit_state = Bundle.load(registry.path(registry.current() or ""), search=False).explore
        assert refit_state is not None and np.array_equal(refit_state.rewards, state.rewards)
    finally:
        worker.lease.release()
    with open_store(tmp_path / "shop.duckdb", read_only=True) as store:
        logged = store.impressions().filter(pl.col("surface") == "recommendations")
    assert logged.height == 60 * 5 and (logged["propensity"] < 1).any()
