"""The serving API end to end on a tiny synthetic store: real time (in-process and Redis), hot swap, erase,
cold start, rules, explanations, safety. One bundle is built for the module (fast sources + content)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from aisle.bundle import build_serving_bundle
from aisle.config import Settings
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import PipelineConfig, SourceSpec
from aisle.serve import Services, create_app
from aisle.store import Store
from tests.bundles import save_bundle, synthetic_shop
from tests.redisserver import free_port, redis_server

SOURCES = (SourceSpec("als", "als", "user", {"factors": 16, "iterations": 5}),
           SourceSpec("itemknn", "itemknn", "i2i", decay=0.7),
           SourceSpec("markov", "markov", "i2i", window=5, decay=0.5),
           SourceSpec("fbt", "fbt", "bought_together"),
           SourceSpec("trending", "trending", "trending"))  # content (MiniLM over descriptions) costs minutes here


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return synthetic_shop(SyntheticConfig(n_items=400, n_users=200, n_events=12_000, seed=3))


@pytest.fixture(scope="module")
def bundle_dir(shop: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b1"
    save_bundle(shop, SOURCES, out, rounds=30)
    return out


@pytest.fixture
def client(bundle_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(bundle=bundle_dir, store=tmp_path / "live.duckdb")
    with TestClient(create_app(settings)) as c:
        yield c


def _user_with_history(client: TestClient, shop: Dataset) -> str:
    """An active shopper whose whole history fits the bundle's per-user window (50 events)."""
    counts = shop.events.group_by("user_id").len().filter((shop.events.group_by("user_id").len()["len"] >= 20)
                                                         & (shop.events.group_by("user_id").len()["len"] <= 45))
    return str(counts.sort("user_id")["user_id"][0])


def _far_item(client: TestClient, shop: Dataset, user: str) -> tuple[str, str]:
    """An item from a category the user never touched (so viewing it must change their list)."""
    seen = set(shop.events.filter(shop.events["user_id"] == user)["item_id"].drop_nulls().to_list())
    cat_of = dict(zip(shop.items["item_id"].to_list(), shop.items["categories"].to_list(), strict=True))
    cats = {tuple(cat_of.get(i) or ()) for i in seen}
    popular = shop.events.drop_nulls("item_id").group_by("item_id").len().sort(["len", "item_id"],
                                                                                descending=[True, False])
    for item in popular["item_id"].drop_nulls():
        if tuple(cat_of.get(item) or ()) not in cats:
            return str(item), str(shop.items.filter(shop.items["item_id"] == item)["title"][0])
    raise AssertionError("no far item")


# ---- reads -----------------------------------------------------------------------------------------------


def test_health_ready_docs(client: TestClient) -> None:
    health = client.get("/health")
    ready_version = client.get("/ready").json()["model_version"]
    assert health.json() == {"status": "ok", "pid": os.getpid(), "version": ready_version, "registry_version": None,
                             "loaded_at": health.json()["loaded_at"]}  # a bundle folder: no registry version
    assert health.headers["x-aisle-worker"] == str(os.getpid()) and health.headers["x-aisle-version"] == ready_version
    r = client.get("/ready").json()
    assert r["ready"] and r["state"] == "memory" and r["model_version"]
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/users/{user_id}/recommendations", "/items/{item_id}/similar", "/items/{item_id}/bought-together",
              "/trending", "/search", "/events", "/items", "/users/{user_id}", "/admin/reload", "/metrics"):
        assert p in paths


def test_recommendations_are_cards_with_explanations_and_respect_rules(client: TestClient, shop: Dataset) -> None:
    user = _user_with_history(client, shop)
    r = client.get(f"/users/{user}/recommendations", params={"k": 12})
    assert r.status_code == 200
    body = r.json()
    assert body["known_user"] and len(body["items"]) == 12
    seen = set(shop.events.filter(shop.events["user_id"] == user)["item_id"].drop_nulls().to_list())
    for it in body["items"]:
        assert {"item_id", "title", "brand", "price", "category", "available", "score", "explanation"} <= set(it)
        assert it["explanation"]["text"] and it["available"]
        assert it["item_id"] not in seen  # exclude_seen="all" by default
    assert len({i["item_id"] for i in body["items"]}) == 12
    brand = body["items"][0]["brand"]
    only = client.get(f"/users/{user}/recommendations", params={"k": 5, "brand": brand}).json()["items"]
    assert only and all(i["brand"] == brand for i in only)
    cheap = client.get(f"/users/{user}/recommendations", params={"k": 5, "price_max": 30}).json()["items"]
    assert all(i["price"] <= 30 for i in cheap)


def test_unknown_user_and_item_get_fallbacks_not_errors(client: TestClient) -> None:
    r = client.get("/users/nobody-at-all/recommendations", params={"k": 5})
    assert r.status_code == 200 and len(r.json()["items"]) == 5 and not r.json()["known_user"]
    assert all(i["explanation"]["type"] == "trending" for i in r.json()["items"])
    r = client.get("/items/no-such-item/similar")
    assert r.status_code == 200 and r.json()["fallback"] == "trending" and r.json()["items"]


def test_every_answer_says_its_time_in_the_app_in_server_timing(client: TestClient, shop: Dataset) -> None:
    """`Server-Timing: app;dur=<ms>`: the app's share of an answer, so a client (the load benchmark, a browser's
    developer tools) tells time in the server from time queued outside it; errors carry it too."""
    user = _user_with_history(client, shop)
    for path, status in ((f"/users/{user}/recommendations", 200), ("/trending", 200), ("/search?q=boots", 200),
                         ("/users/u/recommendations?k=0", 422), ("/no-such-route", 404)):
        t0 = time.perf_counter()
        r = client.get(path)
        elapsed_ms = (time.perf_counter() - t0) * 1000
        assert r.status_code == status, path
        name, dur = r.headers["server-timing"].split(";")
        assert name == "app" and dur.startswith("dur="), r.headers["server-timing"]
        assert 0 < float(dur.removeprefix("dur=")) < elapsed_ms, (path, dur, elapsed_ms)


def test_requests_are_served_on_the_event_loop_without_a_thread_hop(client: TestClient, shop: Dataset,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot routes and their dependencies run inline: a hop to the thread pool per request (what FastAPI does
    for a plain `def` dependency) was ~10% of a worker's CPU under load."""
    import anyio.to_thread

    hops: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    user = _user_with_history(client, shop)
    item = str(shop.items["item_id"][0])
    for path in (f"/users/{user}/recommendations", f"/items/{item}/similar", f"/items/{item}/bought-together",
                 "/trending", "/search?q=boots", f"/search?q=boots&user={user}", "/health"):
        assert client.get(path).status_code == 200, path
    ev = {"user_id": user, "item_id": item, "event_type": "view"}
    assert client.post("/events", json={"events": [ev]}).json()["accepted"] == 1
    assert hops == []


def test_similar_bought_together_trending(client: TestClient, shop: Dataset) -> None:
    counts = shop.events.drop_nulls("item_id").group_by("item_id").len()
    item = str(counts.sort(["len", "item_id"], descending=[True, False])["item_id"][0])
    sim = client.get(f"/items/{item}/similar", params={"k": 5}).json()
    assert sim["item"]["item_id"] == item and len(sim["items"]) == 5
    assert item not in {i["item_id"] for i in sim["items"]}
    bt = client.get(f"/items/{item}/bought-together", params={"k": 5}).json()
    assert bt["items"] and all(i["explanation"]["item_id"] == item for i in bt["items"])
    tr = client.get("/trending", params={"k": 3}).json()["items"]
    assert len(tr) == 3 and tr[0]["explanation"]["text"].startswith("Trending")
    cat = tr[0]["category"][0]
    assert all(cat in i["category"] for i in client.get("/trending", params={"category": cat}).json()["items"])


def test_search_with_facets_filters_personalisation_and_cache(client: TestClient, shop: Dataset) -> None:
    r = client.get("/search", params={"q": "hiking boots", "page_size": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] > 0 and body["hits"] and body["facets"]["brand"]
    assert {"category", "currency", "available"} <= set(body["hits"][0])
    again = client.get("/search", params={"q": "hiking boots", "page_size": 5}).json()
    assert again.pop("cached") and again.pop("request_id") != body["request_id"]  # a cached answer is a new list
    assert again == {k: v for k, v in body.items() if k not in ("cached", "request_id")}
    brand = body["facets"]["brand"][0]["value"]
    only = client.get("/search", params={"q": "hiking boots", "brand": brand}).json()
    assert only["total"] == body["facets"]["brand"][0]["count"]
    user = _user_with_history(client, shop)
    personal = client.get("/search", params={"q": "hiking boots", "user": user}).json()
    assert personal["total"] == body["total"] and not personal["cached"]


# ---- real time, erase, idempotency -------------------------------------------------------------------------


def test_an_event_changes_the_very_next_recommendation(client: TestClient, shop: Dataset) -> None:
    user = _user_with_history(client, shop)
    before = [i["item_id"] for i in client.get(f"/users/{user}/recommendations", params={"k": 10}).json()["items"]]
    item, title = _far_item(client, shop, user)
    ev = {"events": [{"user_id": user, "item_id": item, "event_type": "view", "event_id": "rt-1"}]}
    assert client.post("/events", json=ev).json() == {"accepted": 1, "duplicates": 0}
    after = client.get(f"/users/{user}/recommendations", params={"k": 10}).json()
    assert after["live_events"] == 1
    assert [i["item_id"] for i in after["items"]] != before
    assert any(i["explanation"].get("item_id") == item and title in i["explanation"]["text"] for i in after["items"])


def test_events_are_idempotent_and_reach_the_store(client: TestClient, bundle_dir: Path, tmp_path: Path) -> None:
    ev = {"events": [{"user_id": "shopper-x", "item_id": "i00001", "event_type": "view", "event_id": "dup-1"},
                     {"user_id": "shopper-x", "item_id": "i00002", "event_type": "add_to_cart",
                      "timestamp": "2026-01-02T03:04:05Z"}]}  # no id: the natural key (user, item, type, time)
    assert client.post("/events", json=ev).json() == {"accepted": 2, "duplicates": 0}
    assert client.post("/events", json=ev).json() == {"accepted": 0, "duplicates": 2}
    svc: Services = client.app.state.services
    svc.sink.flush()
    with Store(tmp_path / "live.duckdb", read_only=True) as store:
        assert store.events("user_id = 'shopper-x'").height == 2


def test_erase_forgets_live_state_bundle_history_and_stored_events(bundle_dir: Path, shop: Dataset,
                                                                   tmp_path: Path) -> None:
    """The store is read after the app has shut down: its consumer thread holds the file while it runs (a second,
    read-only connection in the same process is refused), and its last flush must not bring the erased events back."""
    path = tmp_path / "live.duckdb"
    with TestClient(create_app(Settings(bundle=bundle_dir, store=path))) as client:
        user = _user_with_history(client, shop)
        client.post("/events", json={"events": [{"user_id": user, "item_id": "i00003", "event_type": "purchase"}]})
        assert client.get(f"/users/{user}/recommendations").json()["history_length"] > 1
        r = client.delete(f"/users/{user}")
        assert r.status_code == 200 and r.json()["erased"] and r.json()["live_events"] == 1
        assert r.json()["stored_events"] == 1
        after = client.get(f"/users/{user}/recommendations").json()
        assert after["history_length"] == 0 and not after["known_user"]
    with Store(path, read_only=True) as store:
        assert store.events("user_id = ?", [user]).height == 0


def test_a_postgresql_store_receives_events_items_and_erasures(bundle_dir: Path, shop: Dataset) -> None:
    """`--store postgresql://...`: the same sink, with no file lock; what the API accepted, upserted and erased is
    what the database holds, and the dashboard reads its statistics from there without the password."""
    from aisle.store import open_store
    from tests.pgserver import fresh_database, postgres_server

    with postgres_server() as server:
        url = fresh_database(server, "served")
        secret = url.replace("aisle@", "aisle:pw@")  # trust auth ignores the password; messages must not show it
        with TestClient(create_app(Settings(bundle=bundle_dir, store=secret))) as client:
            user = _user_with_history(client, shop)
            ev = {"events": [{"user_id": "shopper-pg", "item_id": "i00001", "event_type": "view", "event_id": "p-1"},
                             {"user_id": "shopper-pg", "item_id": "i00002", "event_type": "add_to_cart",
                              "timestamp": "2026-01-02T03:04:05Z"},
                             {"user_id": user, "item_id": "i00003", "event_type": "purchase"}]}
            assert client.post("/events", json=ev).json() == {"accepted": 3, "duplicates": 0}
            svc: Services = client.app.state.services
            svc.sink.flush()
            anchor = shop.items.row(0, named=True)
            item = {"item_id": "pg-new-1", "title": anchor["title"] + " Pg edition", "brand": anchor["brand"],
                    "categories": anchor["categories"], "price": 12.5}
            assert client.put("/items", json={"items": [item]}).status_code == 200
            with open_store(url, read_only=True) as store:
                events = store.events()
                assert events.filter(pl.col("user_id") == "shopper-pg").height == 2
                assert store.items().filter(pl.col("item_id") == "pg-new-1")["price"].to_list() == [12.5]
            r = client.delete(f"/users/{user}")
            assert r.status_code == 200 and r.json()["stored_events"] == 1
            overview = client.get("/api/web/overview").json()["events"]
            assert overview["source"] == "store" and overview["events"] == 2, overview
            assert "pw" not in overview["path"] and overview["path"].endswith("/served")
        with open_store(url, read_only=True) as store:
            assert store.events()["user_id"].to_list() == ["shopper-pg", "shopper-pg"]


# ---- catalog ----------------------------------------------------------------------------------------------


def test_new_items_are_searchable_and_recommendable_at_once(client: TestClient, shop: Dataset) -> None:
    anchor = shop.items.row(0, named=True)
    new = {"item_id": "brand-new-1", "title": anchor["title"] + " Zephyrion edition", "brand": anchor["brand"],
           "categories": anchor["categories"], "price": 42.0, "description": anchor["description"]}
    r = client.put("/items", json={"items": [new]})
    assert r.status_code == 200 and r.json()["new"] == 1
    hits = client.get("/search", params={"q": "zephyrion"}).json()["hits"]
    assert hits and hits[0]["item_id"] == "brand-new-1"
    sim = client.get(f"/items/{anchor['item_id']}/similar", params={"k": 20}).json()["items"]
    assert "brand-new-1" in [i["item_id"] for i in sim]
    client.post("/events", json={"events": [{"user_id": "cold-1", "item_id": anchor["item_id"], "event_type": "view"}]})
    recs = client.get("/users/cold-1/recommendations", params={"k": 10}).json()["items"]
    mine = [n for n, i in enumerate(recs) if i["item_id"] == "brand-new-1"]
    assert mine and mine[0] < 3  # the new_item_slot rule (default 3)
    assert recs[mine[0]]["explanation"] == {"type": "similar", "item_id": anchor["item_id"],
                                            "text": f"New, and similar to {anchor['title']}"}
    assert client.get("/items/brand-new-1/similar", params={"k": 3}).json()["items"]


# ---- safety -------------------------------------------------------------------------------------------------


def test_bad_requests_are_clear_json_4xx(client: TestClient) -> None:
    for r in (client.get("/users/x/recommendations", params={"k": 0}), client.post("/events", content=b"{oops"),
              client.post("/events", json={"events": [{"user_id": "u", "event_type": "view"}]}),
              client.post("/events", json={"events": [{"user_id": "u", "item_id": "i", "event_type": "teleport"}]}),
              client.get("/search", params={"q": "x", "sort": "cheapest"}),
              client.get("/users/x/recommendations", params={"price_min": 10, "price_max": 1})):
        assert r.status_code == 422 and r.json()["error"] == "validation" and "Traceback" not in r.text
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    big = {"events": [{"user_id": "u" * 200, "item_id": "i" * 200, "event_type": "view"}] * 3000}
    r = client.post("/events", json=big)
    assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_api_keys_guard_write_and_admin_routes(bundle_dir: Path) -> None:
    with TestClient(create_app(Settings(bundle=bundle_dir, api_keys=("w-key",), admin_keys=("a-key",)))) as c:
        ev = {"events": [{"user_id": "u", "item_id": "i00001", "event_type": "view"}]}
        assert c.post("/events", json=ev).status_code == 401
        assert c.post("/events", json=ev, headers={"X-API-Key": "nope"}).status_code == 403
        assert c.post("/events", json=ev, headers={"X-API-Key": "w-key"}).status_code == 200
        assert c.post("/events", json=ev, headers={"Authorization": "Bearer w-key"}).status_code == 200
        assert c.post("/admin/reload", headers={"X-API-Key": "w-key"}).status_code == 403
        assert c.post("/admin/reload", headers={"X-API-Key": "a-key"}).status_code == 200
        assert c.get("/users/u/recommendations").status_code == 200  # reads stay open


def test_metrics_and_stats(client: TestClient) -> None:
    client.get("/users/u1/recommendations")
    text = client.get("/metrics").text
    assert 'aisle_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}' in text
    assert "aisle_request_seconds_bucket" in text and "aisle_model_info" in text
    stats = client.get("/api/stats").json()
    assert stats["traffic"]["routes"]["/users/{user_id}/recommendations"]["requests_per_s"] > 0
    assert stats["catalog"]["items"] == 400 and stats["bundle"]["version"]


def _gc_pauses(text: str, generation: int) -> float:
    prefix = f'aisle_gc_pause_seconds_count{{generation="{generation}"}} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


def test_metrics_time_the_garbage_collectors_full_pauses(client: TestClient) -> None:
    import gc

    before = _gc_pauses(client.get("/metrics").text, 2)
    gc.collect()  # a full collection, as a worker's allocations trigger one
    assert _gc_pauses(client.get("/metrics").text, 2) >= before + 1


# ---- hot swap under load (a real uvicorn server) ----------------------------------------------------------------



def _server(settings: Settings) -> tuple[object, threading.Thread]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port,
                                           log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, t


def test_hot_swap_keeps_requests_flowing(bundle_dir: Path, shop: Dataset, tmp_path: Path) -> None:
    second = tmp_path / "b2"
    shutil.copytree(bundle_dir, second)
    b2 = build_serving_bundle(Dataset(name="shop", items=shop.items, users=shop.users, events=shop.events[:-500]),
                              PipelineConfig(sources=SOURCES[:2] + SOURCES[3:], rounds=20), dense=False)
    b2.save(second, data_fingerprint="second", metrics={})
    settings = Settings(bundle=bundle_dir, port=free_port())
    server, thread = _server(settings)
    url = f"http://127.0.0.1:{settings.port}"
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer(path: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as h:
            while not stop.is_set():
                r = h.get(path)
                if r.status_code != 200:
                    failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                else:
                    versions.append(r.json()["model_version"])

    workers = [threading.Thread(target=hammer, args=(p,)) for p in ("/users/u00001/recommendations?k=10",
                                                                     "/search?q=boots", "/trending")]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=120) as h:
            r = h.post("/admin/reload", json={"path": str(second)})
        assert r.status_code == 200, r.text
        new_version = r.json()["model_version"]
        time.sleep(0.5)
    finally:
        stop.set()
        for w in workers:
            w.join()
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)
    assert not failures
    assert new_version.endswith("/second") and r.json()["previous_version"] != new_version
    assert versions[-1] == new_version and len(set(versions)) == 2 and len(versions) > 20


# ---- Redis state: several workers share one shopper's live session ------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis"), aof=False) as url:
        yield url


def test_real_time_with_redis_state_across_two_workers(bundle_dir: Path, shop: Dataset, redis_url: str) -> None:
    settings = Settings(bundle=bundle_dir, state=redis_url)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        assert a.get("/ready").json()["state"] == "redis"
        user = _user_with_history(a, shop)
        before = [i["item_id"] for i in b.get(f"/users/{user}/recommendations").json()["items"]]
        item, _title = _far_item(a, shop, user)
        ev = {"events": [{"user_id": user, "item_id": item, "event_type": "view", "event_id": "redis-rt-1"}]}
        assert a.post("/events", json=ev).json()["accepted"] == 1
        assert b.post("/events", json=ev).json() == {"accepted": 0, "duplicates": 1}  # idempotent across workers
        after = b.get(f"/users/{user}/recommendations").json()  # the other worker sees the event at once
        assert after["live_events"] == 1 and [i["item_id"] for i in after["items"]] != before
        assert any(i["explanation"].get("item_id") == item for i in after["items"])
        assert b.delete(f"/users/{user}").json()["live_events"] == 1
        gone = a.get(f"/users/{user}/recommendations").json()
        assert gone["history_length"] == 0 and not gone["known_user"]


def test_redis_catalog_upserts_reach_other_workers(bundle_dir: Path, shop: Dataset, redis_url: str) -> None:
    settings = Settings(bundle=bundle_dir, state=redis_url)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        item = shop.items.row(5, named=True)
        a.put("/items", json={"items": [{"item_id": item["item_id"], "title": item["title"], "price": 1.0,
                                         "categories": item["categories"], "brand": item["brand"]}]})
        svc_b: Services = b.app.state.services
        b.portal.call(svc_b.sync_catalog)  # what its background poll does every second (it may have done it)
        assert svc_b.catalog_version == a.app.state.services.catalog_version
        card = b.get(f"/items/{item['item_id']}/similar").json()["item"]
        assert np.isclose(card["price"], 1.0)


def test_a_shoppers_reads_see_an_upsert_made_through_another_worker_at_once(bundle_dir: Path, shop: Dataset,
                                                                           redis_url: str) -> None:
    """The /users/{id}/... reads check the catalog version in the same Redis round trip as the history read
    (`Services.shopper`), not in the middleware: the first read after a PUT through another worker shows it."""
    settings = Settings(bundle=bundle_dir, state=redis_url)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        user = _user_with_history(b, shop)
        for price in (1234.5, 2345.5):
            card = b.get(f"/users/{user}/recommendations").json()["items"][0]
            body = {k: card[k] for k in ("item_id", "title", "brand", "category")}
            body["categories"] = body.pop("category")
            assert a.put("/items", json={"items": [{**body, "price": price}]}).status_code == 200
            after = {c["item_id"]: c for c in b.get(f"/users/{user}/recommendations").json()["items"]}
            assert np.isclose(after[card["item_id"]]["price"], price)
        assert b.app.state.services.catalog_version == a.app.state.services.catalog_version


@pytest.mark.parametrize("freeze", [True, False])
def test_the_loaded_bundle_is_kept_out_of_garbage_collection_while_serving(bundle_dir: Path, freeze: bool) -> None:
    """gc_freeze: after a load the bundle's objects are frozen (full collections skip them); a shutdown thaws."""
    import gc

    with TestClient(create_app(Settings(bundle=bundle_dir, gc_freeze=freeze))) as c:
        assert c.get("/ready").status_code == 200
        frozen = gc.get_freeze_count()
        assert (frozen > 0) == freeze
        assert c.post("/admin/reload").status_code == 200
        assert (gc.get_freeze_count() > 0) == freeze
        assert c.get("/users/nobody/recommendations").status_code == 200
    assert gc.get_freeze_count() == 0
