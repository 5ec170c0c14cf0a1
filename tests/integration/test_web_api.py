"""The storefront's read-only routes (/api/web/*), the pages and their files, over a small real bundle."""

from __future__ import annotations

from collections.abc import Iterator
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

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("fbt", "fbt", "bought_together"),
           SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return synthetic_shop(SyntheticConfig(n_items=200, n_users=100, n_events=5_000, seed=5))


@pytest.fixture(scope="module")
def bundle_dir(shop: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web") / "bundle"
    save_bundle(shop, SOURCES, out, rounds=20)
    return out


@pytest.fixture
def client(bundle_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(bundle=bundle_dir))) as c:
        yield c


def test_pages_and_files_are_served_and_stay_inside_static(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 200 and "text/html" in home.headers["content-type"]
    assert '<main id="main"' in home.text and "/web/js/store.js" in home.text
    assert 'id="dash"' in client.get("/dashboard").text
    js = client.get("/web/js/store.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    for path in ("/web/js/api.js", "/web/js/pages.js", "/web/js/dashboard.js", "/web/js/charts.js", "/web/style.css"):
        assert client.get(path).status_code == 200, path
    for bad in ("/web/../api.py", "/web/%2e%2e/api.py", "/web/js/", "/web/nope.js"):
        r = client.get(bad)
        assert r.status_code == 404 and r.json()["error"] == "not_found", bad
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_config_and_known_users(client: TestClient, shop: Dataset) -> None:
    cfg = client.get("/api/web/config").json()
    assert cfg["ready"] and cfg["searchable"] and not cfg["write_key_required"] and cfg["categories"]
    users = client.get("/api/web/users", params={"k": 8}).json()["users"]
    assert len(users) == 8
    counts = dict(shop.events.group_by("user_id").len().iter_rows())
    assert all(u["user_id"] in counts and u["events"] >= 1 for u in users)
    assert len({u["top_category"] for u in users}) >= 6  # a spread of tastes to switch between
    rec = client.get(f"/users/{users[0]['user_id']}/recommendations").json()
    assert rec["known_user"]
    assert client.get("/api/web/users", params={"k": 0}).status_code == 422


def test_item_detail_has_description_and_attributes(client: TestClient, shop: Dataset) -> None:
    row = shop.items.row(0, named=True)
    d = client.get(f"/api/web/items/{row['item_id']}").json()
    assert d["title"] == row["title"] and d["description"] == row["description"]
    assert isinstance(d["attributes"], dict) and d["attributes"]
    assert d["category"] == row["categories"]
    r = client.get("/api/web/items/no-such-item")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_suggestions_complete_to_the_catalog_and_fix_typos(client: TestClient, shop: Dataset) -> None:
    leaf = shop.items["categories"].list.last().value_counts(sort=True)["categories"][0]
    out = client.get("/api/web/suggest", params={"q": leaf[:4]}).json()["suggestions"]
    assert any(s["kind"] == "category" and s["text"] == leaf for s in out), out
    assert all(leaf[:4].lower() in s["text"].lower() for s in out)
    items = [s for s in out if s["kind"] == "item"]
    assert items and all(s["item_id"] in set(shop.items["item_id"]) for s in items)
    leaves = shop.items["categories"].list.last().value_counts(sort=True)["categories"].to_list()
    word = next(w.lower() for w in leaves if " " not in w and len(w) >= 7)
    typo = word[:3] + word[4:]
    fixed = client.get("/api/web/suggest", params={"q": typo}).json()["suggestions"]
    assert fixed and fixed[0]["kind"] == "correction" and fixed[0]["text"] == word, (typo, fixed)
    assert client.get("/api/web/suggest", params={"q": ""}).json()["suggestions"] == []


def test_overview_from_the_bundle_and_from_the_store(bundle_dir: Path, shop: Dataset, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(bundle=bundle_dir))) as c:
        o = c.get("/api/web/overview").json()
    assert o["catalog"]["items"] == shop.items.height
    assert o["catalog"]["available"] == int(shop.items["available"].sum())
    assert o["catalog"]["brands"] == shop.items["brand"].n_unique()
    assert o["events"]["source"] == "bundle" and o["events"]["events_by_type"]["view"] > 0
    db = tmp_path / "shop.duckdb"
    with Store(db) as store:
        store.ingest(shop)
    with TestClient(create_app(Settings(bundle=bundle_dir, store=db))) as c:
        o = c.get("/api/web/overview").json()["events"]
    by_type = dict(shop.events.group_by("event_type").len().iter_rows())
    assert o["source"] == "store" and o["events"] == shop.events.height and o["events_by_type"] == by_type


def test_catalog_upserts_reach_suggestions(client: TestClient) -> None:
    item = {"item_id": "new-1", "title": "Zephyrine quartz hourglass", "brand": "Zephyrine",
            "categories": ["Home", "Decor"], "price": 19.0}
    assert client.put("/items", json={"items": [item]}).status_code == 200
    out = client.get("/api/web/suggest", params={"q": "zephyr"}).json()["suggestions"]
    assert {"text": "Zephyrine", "kind": "brand", "items": 1} in out
    assert any(s.get("item_id") == "new-1" for s in out)
    assert pl.DataFrame(out).height <= 8


def test_config_says_when_event_posts_need_a_key(bundle_dir: Path) -> None:
    with TestClient(create_app(Settings(bundle=bundle_dir, api_keys=("k1",)))) as c:
        assert c.get("/api/web/config").json()["write_key_required"] is True
        event = {"events": [{"user_id": "anon-1", "item_id": "x", "event_type": "view"}]}
        assert c.post("/events", json=event).status_code == 401
        assert c.post("/events", json=event, headers={"X-API-Key": "k1"}).status_code == 200
        assert c.get("/api/web/users").status_code == 200  # the storefront's reads stay open
