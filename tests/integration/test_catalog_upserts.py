"""`PUT /items` through one worker of a real `aisle serve --workers 2` (Redis state): the items are searchable
and recommendable on both workers by the next request, with no failed request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from tests.bundles import save_bundle, synthetic_shop
from tests.redisserver import free_port, redis_server
from tests.serving import clients_per_worker, wait_ready, worker_pid

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return synthetic_shop(SyntheticConfig(n_items=400, n_users=150, n_events=6_000, seed=7))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, shop: Dataset) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    save_bundle(shop, SOURCES, out, rounds=10, search=True)
    return out


@pytest.fixture
def workers(bundle_dir: Path, tmp_path: Path) -> Iterator[dict[int, httpx.Client]]:
    with redis_server(tmp_path / "redis") as redis_url:
        port = free_port()
        log = tmp_path / "serve.log"
        proc = subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(bundle_dir), "--port",
                                 str(port), "--workers", "2", "--state", redis_url],
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                                stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, proc, seconds=120, output=log.read_text)
            clients = clients_per_worker(url, 2, timeout=30)
            yield clients
            for c in clients.values():
                c.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def _ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


def test_put_through_one_worker_is_served_by_both_at_once(workers: dict[int, httpx.Client], shop: Dataset) -> None:
    items = shop.items
    leaves = items.with_columns(pl.col("categories").list.last().alias("leaf")).group_by("leaf",
                                                                                      maintain_order=True).first()
    assert leaves.height >= 8
    pids = sorted(workers)
    for n in range(8):
        writer = workers[pids[n % 2]]
        template = leaves.row(n, named=True)  # each round's new item in a leaf of its own: its neighbours are its
        new_id, word = f"new-{n}", f"zorbix{chr(97 + n)}"  # and no earlier round's new item competes for its slot
        changed = items.row(50 + n, named=True)
        body = {"items": [
            {"item_id": new_id, "title": f"{word} {template['title']}", "brand": template["brand"],
             "categories": template["categories"], "price": 12.5, "description": "",
             "attributes": {}},
            {"item_id": changed["item_id"], "title": f"quixel{chr(97 + n)} {changed['title']}", "price": 3.0,
             "brand": changed["brand"], "categories": changed["categories"], "available": n % 2 == 0}]}
        got = _ok(writer.put("/items", json=body))
        assert got["upserted"] == 2 and got["new"] == 1
        for pid, client in workers.items():  # right after the answer, on each worker
            hits = _ok(client.get("/search", params={"q": word}))["hits"]
            assert [h["item_id"] for h in hits] == [new_id], pid
            found = _ok(client.get("/search", params={"q": f"quixel{chr(97 + n)}"}))["hits"]
            if n % 2 == 0:
                assert [h["item_id"] for h in found] == [changed["item_id"]] and found[0]["price"] == 3.0
            else:  # made unavailable: searches leave it out (rules.only_available)
                assert found == []
            similar = _ok(client.get(f"/items/{new_id}/similar", params={"k": 5}))
            assert similar["item"]["item_id"] == new_id and similar["items"] and "fallback" not in similar
            anchor = similar["items"][0]["item_id"]
            back = _ok(client.get(f"/items/{anchor}/similar", params={"k": 100}))
            assert new_id in [i["item_id"] for i in back["items"]]
            recs = _ok(client.get(f"/users/shopper-{n}-{pid}/recommendations", params={"context_item": anchor}))
            assert new_id in [i["item_id"] for i in recs["items"]]  # a candidate, or shown by the new-item slot
            assert worker_pid(client) == pid  # still the same worker behind this client
