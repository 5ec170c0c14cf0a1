"""The Redis log of `PUT /items` batches is trimmed by `aisle worker` once every version in the registry carries
them, with real processes: a replica that served through the trim and one started after it both serve every
upserted item, and upserts after the trim reach both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import polars as pl
import redis

from aisle.config import load_settings
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.pipeline import PipelineConfig
from aisle.registry import Registry
from aisle.store import open_store
from tests.redisserver import free_port, redis_server
from tests.serving import aisle_process, clients_per_worker, wait_ready
from tests.workers import run_job

SOURCES = [{"key": "itemknn", "model": "itemknn", "kind": "i2i", "decay": 0.7},
           {"key": "trending", "model": "trending", "kind": "trending"}]
WORKER_ENV = {"AISLE_WORKER__DENSE": "false", "AISLE_WORKER__HOLDOUT_EVENTS": "500",
              "AISLE_WORKER__TOLERANCE": "1.0",  # the gate is not under test: every healthy candidate is promoted
              "AISLE_WORKER__LATENCY_BUDGET_MS": "5000", "AISLE_REGISTRY_KEEP": "2"}


def _shop(root: Path) -> pl.DataFrame:
    """A DuckDB store and a registry whose first version a worker fitted without Redis (it covers no upsert)."""
    s = generate(SyntheticConfig(n_items=300, n_users=150, n_events=6_000, seed=5))
    with open_store(root / "shop.duckdb") as store:
        store.upsert_items(s.items)
        store.upsert_users(s.users)
        store.append_events(s.events)
    (root / "pipeline.json").write_text(json.dumps({"pipeline": {"rounds": 10, "sources": SOURCES}}))
    settings = load_settings(None, env={**WORKER_ENV, "AISLE_WORKER__PIPELINE": str(root / "pipeline.json")},
                             bundle=root / "registry", store=str(root / "shop.duckdb"))
    pipeline = PipelineConfig().updated({"rounds": 10, "sources": SOURCES})
    assert run_job(settings, pipeline=pipeline).decision.promoted  # type: ignore[union-attr]
    return s.items


def _run_worker(root: Path, redis_url: str, job: str) -> None:
    log = root / f"worker-{job}.log"
    r = subprocess.run([sys.executable, "-m", "aisle", "worker", "--bundle", str(root / "registry"), "--store",
                        str(root / "shop.duckdb"), "--state", redis_url, "--once", job],
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
                            **WORKER_ENV, "AISLE_WORKER__PIPELINE": str(root / "pipeline.json")},
                       capture_output=True, text=True, timeout=600)
    log.write_text(r.stdout + r.stderr)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


def _item(template: dict, item_id: str, title: str) -> dict:
    return {"item_id": item_id, "title": title, "brand": template["brand"], "categories": template["categories"],
            "price": 9.5, "description": "", "attributes": {}}


def _finds(client: httpx.Client, word: str, item_id: str) -> bool:
    r = client.get("/search", params={"q": word})
    assert r.status_code == 200, r.text[:300]
    return [h["item_id"] for h in r.json()["hits"]] == [item_id]


def _eventually(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_the_upsert_log_is_trimmed_and_every_replica_still_serves_every_item(tmp_path: Path) -> None:
    items = _shop(tmp_path)
    registry = Registry(tmp_path / "registry", keep=2)
    rows = items.rows(named=True)
    changed = rows[20]
    upserts = {  # word -> the item it finds, batch by batch
        1: [_item(rows[0], "new-0", "zorbixa lamp"), {**_item(changed, changed["item_id"], "quixela "
                                                                + changed["title"]), "price": changed["price"]}],
        2: [_item(rows[1], "new-1", "zorbixb kettle")],
        3: [_item(rows[2], "new-2", "zorbixc blanket")],
    }
    words = {"zorbixa": "new-0", "quixela": changed["item_id"], "zorbixb": "new-1", "zorbixc": "new-2"}
    with redis_server(tmp_path / "redis") as redis_url:
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        port_a = free_port()
        serve = ["serve", "--bundle", str(tmp_path / "registry"), "--workers", "2", "--state", redis_url, "--store",
                 str(tmp_path / "shop.duckdb"), "--follow", "1"]
        with aisle_process([*serve, "--port", str(port_a)], tmp_path / "a.log") as a:
            url_a = f"http://127.0.0.1:{port_a}"
            wait_ready(url_a, a, output=(tmp_path / "a.log").read_text)
            clients_a = clients_per_worker(url_a, 2, timeout=30)
            writer = next(iter(clients_a.values()))
            for batch in (upserts[1], upserts[2]):
                assert writer.put("/items", json={"items": batch}).status_code == 200

            # a refit reads both batches from the store; the first version (no Redis then) covers none: kept
            _run_worker(tmp_path, redis_url, "refit")
            refit = registry.current()
            assert refit is not None and registry.decision(refit).extra["catalog_version"] == 2  # type: ignore[union-attr]
            assert r.llen("aisle:items:log") == 2 and not r.get("aisle:items:log:base")

            # one more batch, folded by a refresh: the first version is pruned (keep 2), and every version left
            # carries batches 1 and 2, so they leave the log and the hash; batch 3 stays (the refit lacks it)
            assert writer.put("/items", json={"items": upserts[3]}).status_code == 200
            _run_worker(tmp_path, redis_url, "refresh")
            refresh = registry.current()
            assert refresh != refit and [v.version for v in registry.list()] == [refit, refresh]
            assert registry.decision(refresh).extra["catalog_version"] == 3  # type: ignore[union-attr]
            assert r.llen("aisle:items:log") == 1 and r.get("aisle:items:log:base") == "2"
            assert set(r.hkeys("aisle:items")) == {"new-2"}
            assert r.get("aisle:items:version") == "3"

            # the replica that served through the trim follows the new version on both workers, every item served
            for client in clients_a.values():
                _eventually(lambda c=client: c.get("/health").json()["registry_version"] == refresh,
                            "replica A to follow the refresh")
                for word, item_id in words.items():
                    assert _finds(client, word, item_id), (word, client.get("/health").json())

            # a replica started after the trim: the version it loads carries batches 1-2, the log gives it 3
            port_b = free_port()
            with aisle_process([*serve, "--port", str(port_b)], tmp_path / "b.log") as b:
                url_b = f"http://127.0.0.1:{port_b}"
                wait_ready(url_b, b, output=(tmp_path / "b.log").read_text)
                clients_b = clients_per_worker(url_b, 2, timeout=30)
                for client in clients_b.values():
                    for word, item_id in words.items():
                        assert _finds(client, word, item_id), (word, client.get("/health").json())
                # and an upsert after the trim, through the late replica, reaches the other at once
                late = [_item(rows[3], "new-3", "zorbixd teapot")]
                got = next(iter(clients_b.values())).put("/items", json={"items": late})
                assert got.status_code == 200 and got.json()["catalog_version"] == 4, got.text
                for client in [*clients_a.values(), *clients_b.values()]:
                    assert _finds(client, "zorbixd", "new-3")
                for client in [*clients_a.values(), *clients_b.values()]:
                    client.close()
        r.close()
