"""What a shopper sees on every page, through the API: recently viewed, buy it again, explained search hits and a
search conversation with undo; each gone with the shopper when they are erased (memory and Redis state)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from aisle.config import Settings
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from aisle.serve import create_app
from aisle.store import Store
from tests.bundles import save_bundle, synthetic_shop
from tests.redisserver import redis_server

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return synthetic_shop(SyntheticConfig(n_items=600, n_users=200, n_events=15_000, seed=8, replenishment=0.3))


@pytest.fixture(scope="module")
def bundle_dir(shop: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    save_bundle(shop, SOURCES, out, rounds=20)
    return out


@pytest.fixture
def client(bundle_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(bundle=bundle_dir))) as c:
        yield c


def _items(shop: Dataset, leaf: str, available: bool = True) -> list[str]:
    it = shop.items.filter((pl.col("categories").list.last() == leaf) & (pl.col("available") == available))
    return it["item_id"].to_list()


def _post(client: TestClient, user: str, events: list[tuple[str, str, datetime]]) -> None:
    body = {"events": [{"user_id": user, "item_id": i, "event_type": t, "timestamp": ts.isoformat()}
                       for i, t, ts in events]}
    r = client.post("/events", json=body)
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text


def test_recently_viewed_newest_first_once_in_stock_and_erased(client: TestClient, shop: Dataset) -> None:
    a, b, c = _items(shop, "Tents")[:3]
    gone = shop.items.filter(~pl.col("available"))["item_id"][0]
    user = "anon-rv-1"
    assert client.get(f"/users/{user}/recently-viewed").json()["items"] == []
    _post(client, user, [(a, "view", NOW - timedelta(minutes=9)), (b, "view", NOW - timedelta(minutes=8)),
                         (gone, "view", NOW - timedelta(minutes=7)), (c, "add_to_cart", NOW - timedelta(minutes=6)),
                         (a, "view", NOW - timedelta(minutes=5))])
    got = client.get(f"/users/{user}/recently-viewed").json()["items"]
    assert [i["item_id"] for i in got] == [a, b]  # a again is newest; the sold-out item and a cart are not views
    assert got[0]["explanation"]["type"] == "recently_viewed" and got[0]["title"]
    assert [i["item_id"] for i in client.get(f"/users/{user}/recently-viewed?k=1").json()["items"]] == [a]
    known = str(shop.events.filter(pl.col("event_type") == "view")["user_id"][0])
    assert client.get(f"/users/{known}/recently-viewed").json()["items"]  # from the bundle's copy of their past
    for who in (user, known):
        assert client.delete(f"/users/{who}").status_code == 200
        assert client.get(f"/users/{who}/recently-viewed").json()["items"] == []


def test_buy_again_proposes_the_due_consumable_not_the_durable_just_bought(client: TestClient, shop: Dataset) -> None:
    coffee, tent = _items(shop, "Coffee beans")[0], _items(shop, "Tents")[0]
    user = "anon-ba-1"
    _post(client, user, [(coffee, "purchase", NOW - timedelta(days=d)) for d in (44, 30, 16)]
          + [(tent, "purchase", NOW - timedelta(hours=20))])
    got = client.get(f"/users/{user}/buy-again").json()
    assert [i["item_id"] for i in got["items"]] == [coffee]
    why = got["items"][0]["explanation"]
    assert why["type"] == "buy_again" and why["times_bought"] == 3 and 12 < why["expected_days"] < 17
    just_after = (NOW - timedelta(days=15)).isoformat()  # a day after the last bag: not due yet
    assert client.get(f"/users/{user}/buy-again", params={"at": just_after}).json()["items"] == []
    assert client.delete(f"/users/{user}").status_code == 200
    assert client.get(f"/users/{user}/buy-again").json()["items"] == []


def test_buy_again_is_logged_as_shown_like_every_list(bundle_dir: Path, shop: Dataset, tmp_path: Path) -> None:
    coffee = _items(shop, "Coffee beans")[0]
    store = tmp_path / "live.duckdb"
    with TestClient(create_app(Settings(bundle=bundle_dir, store=store, impressions_flush_s=0.1))) as c:
        _post(c, "anon-ba-2", [(coffee, "purchase", NOW - timedelta(days=d)) for d in (44, 30, 16)])
        got = c.get("/users/anon-ba-2/buy-again", params={"session_id": "visit-1"})
        assert got.json()["items"] and got.headers["x-request-id"] == got.json()["request_id"]
    with Store(store, read_only=True) as s:
        rows = s.impressions().filter(pl.col("request_id") == got.json()["request_id"]).sort("position")
    assert rows["item_id"].to_list() == [i["item_id"] for i in got.json()["items"]]
    assert set(rows["surface"]) == {"buy_again"} and set(rows["session_id"]) == {"visit-1"}


def test_bad_input_on_the_new_routes_is_a_clear_422(client: TestClient) -> None:
    for path in ("/users/u1/buy-again?at=yesterday", "/users/u1/buy-again?k=0", "/users/u1/recently-viewed?k=100000",
                 "/search?q=tent&conversation=", "/search?q=tent&undo=true", "/search?q=tent&undo=maybe"):
        r = client.get(path)
        assert r.status_code == 422 and r.json()["error"] == "validation", (path, r.text)


def test_every_search_hit_is_explained(client: TestClient, shop: Dataset) -> None:
    for q in ("coffee beans under $20", "waterproof hiking boots", ""):
        hits = client.get("/search", params={"q": q}).json()["hits"]
        assert hits and all(h["explanation"]["type"] == "search" and h["explanation"]["text"] for h in hits)
    boots = client.get("/search", params={"q": "hiking boots"}).json()["hits"][0]["explanation"]
    assert "hiking" in boots["matched_words"] and "title" in boots["fields"]
    priced = client.get("/search", params={"q": "coffee beans under $20"}).json()["hits"][0]["explanation"]
    assert "under $20" in priced["filters"] and "under $20" in priced["text"]
    # personalised: the boost of a brand the shopper keeps choosing is named
    brand = client.get("/search", params={"q": "tent"}).json()["hits"][0]["brand"]
    tents = [i for i in _items(shop, "Tents") if shop.items.filter(pl.col("item_id") == i)["brand"][0] == brand]
    _post(client, "anon-boost", [(i, "view", NOW - timedelta(minutes=n)) for n, i in enumerate(tents[:3])])
    mine = client.get("/search", params={"q": "tent", "user": "anon-boost"}).json()["hits"]
    boosted = [h for h in mine if h["brand"] == brand]
    assert boosted and {"kind": "personal", "on": "brand", "value": brand} in [
        {k: b[k] for k in ("kind", "on", "value")} for b in boosted[0]["explanation"]["boosts"]]
    assert f"you often choose {brand}" in boosted[0]["explanation"]["text"]


def _turn(client: TestClient, q: str, session: str, **extra: str) -> dict:
    r = client.get("/search", params={"q": q, "conversation": session, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_search_conversation_refines_and_undoes(client: TestClient) -> None:
    first = _turn(client, "hiking boots", "conv-1", user="anon-conv")
    assert first["refinement"]["kind"] == "new_search" and not first["refinement"]["undo"]["available"]
    brand = first["hits"][0]["brand"]
    second = _turn(client, f"without {brand}", "conv-1", user="anon-conv")
    ref = second["refinement"]
    assert ref["kind"] == "refine" and ref["constraints"]["filters"]["exclude_brands"] == [brand]
    assert ref["understood"] == f"showing hiking boots not {brand}" and ref["undo"]["available"]
    assert second["hits"] and all(h["brand"] != brand for h in second["hits"])
    third = _turn(client, "cheaper", "conv-1", user="anon-conv")
    assert third["refinement"]["constraints"]["filters"]["price_max"] < max(h["price"] for h in second["hits"])
    again = client.get("/search", params={"conversation": "conv-1", "step": third["refinement"]["step"], "page": 2,
                                           "page_size": 2, "q": "cheaper"}).json()  # a step shown again, not a turn
    assert again["refinement"]["kind"] == "show" and again["refinement"]["constraints"] == \
        third["refinement"]["constraints"] and again["page"] == 2
    back = client.get("/search", params={"conversation": "conv-1", "undo": "true"}).json()
    assert back["refinement"]["kind"] == "undo" and back["refinement"]["constraints"] == ref["constraints"]
    new = _turn(client, "show me coffee makers", "conv-1")
    assert new["refinement"]["kind"] == "new_search" and new["refinement"]["constraints"]["query"] == "coffee makers"
    # erasing the shopper forgets the conversation: "cheaper" is then a new search of its own
    assert client.delete("/users/anon-conv").status_code == 200
    assert _turn(client, "cheaper", "conv-1")["refinement"]["kind"] == "new_search"


def test_a_conversation_continues_on_another_worker_with_redis(bundle_dir: Path,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    with redis_server(tmp_path_factory.mktemp("redis"), aof=False) as url:
        settings = Settings(bundle=bundle_dir, state=url)
        with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
            _turn(a, "tents", "conv-r", user="anon-r")
            got = _turn(b, "only in stock", "conv-r", user="anon-r")
            assert got["refinement"]["kind"] == "refine" and got["refinement"]["constraints"]["query"] == "tents"
            assert b.delete("/users/anon-r").status_code == 200
            assert _turn(a, "only in stock", "conv-r")["refinement"]["kind"] == "new_search"
