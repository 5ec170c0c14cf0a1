"""Exploration through the public API over a small real bundle: over random requests, every explored slot keeps the
business rules and the request's filters, says it is a new item being tried, and its exact propensity is what the
impression log records; the state in a bundle is what serving explores with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from aisle.bundle import Bundle, build_serving_bundle, fingerprint
from aisle.config import ExploreConfig, Pin, RulesConfig, Settings
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.explore import ExploreState
from aisle.pipeline import PipelineConfig, SourceSpec
from aisle.serve import create_app
from aisle.store import open_store

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))
NEW = 30  # the newest items: held out of the bundle, launched through PUT /items


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    s = generate(SyntheticConfig(n_items=200, n_users=100, n_events=5_000, seed=5))
    newest = s.items.filter(pl.col("available")).sort("created_at", descending=True)["item_id"].head(NEW)
    old = Dataset(name="shop", items=s.items.filter(~pl.col("item_id").is_in(newest.implode())), users=s.users,
                  events=s.events.filter(~pl.col("item_id").is_in(newest.implode())))
    out = tmp_path_factory.mktemp("explore") / "bundle"
    b = build_serving_bundle(old, PipelineConfig(sources=SOURCES, rounds=10), search=False, dense=False)
    b.save(out, data_fingerprint=fingerprint(old.events), metrics=b.manifest["metrics"])
    launches = [{"item_id": r["item_id"], "title": r["title"], "brand": r["brand"], "categories": r["categories"],
                 "price": r["price"], "attributes": json.loads(r["attributes"] or "{}")}
                for r in s.items.filter(pl.col("item_id").is_in(newest.implode())).iter_rows(named=True)]
    return {"bundle": out, "items": s.items, "users": s.users["user_id"].to_list(), "new": newest.to_list(),
            "launches": launches}


def _client(shop: dict[str, Any], tmp: Path, explore: ExploreConfig, rules: RulesConfig, bundle: Path | None = None
            ) -> TestClient:
    settings = Settings(bundle=bundle or shop["bundle"], store=tmp / "shop.duckdb", explore=explore, rules=rules)
    return TestClient(create_app(settings))


@pytest.fixture
def served(shop: dict[str, Any], tmp_path: Path) -> Iterator[TestClient]:
    rules = RulesConfig(max_per_brand=3, pins=(Pin(item_id=shop["items"]["item_id"][0], position=1),))
    with _client(shop, tmp_path, ExploreConfig(enabled=True, share=0.7, slots=(2, 5)), rules) as c:
        assert c.put("/items", json={"items": shop["launches"]}).status_code == 200
        yield c


def test_explored_slots_keep_rules_and_filters_over_random_requests(served: TestClient, shop: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    items = {r["item_id"]: r for r in shop["items"].iter_rows(named=True)}
    bundle = Bundle.load(shop["bundle"], search=False)
    categories = sorted({c for p in shop["items"]["categories"].to_list() for c in (p or [])})
    brands = sorted({b for b in shop["items"]["brand"].to_list() if b})
    pinned = shop["items"]["item_id"][0]
    rng = np.random.default_rng(7)
    explored_total, logged = 0, {}
    for n in range(150):
        user = str(rng.choice(shop["users"])) if rng.random() < 0.8 else f"anon-{n}"
        params: dict[str, Any] = {"k": int(rng.integers(5, 13))}
        if rng.random() < 0.3:
            params["category"] = str(rng.choice(categories))
        if rng.random() < 0.2:
            params["brand"] = [str(b) for b in rng.choice(brands, size=2, replace=False)]
        if rng.random() < 0.3:
            low = float(rng.uniform(0, 100))
            params["price_min"], params["price_max"] = low, low + float(rng.uniform(20, 300))
        excluded = [str(i) for i in rng.choice(shop["new"], size=5, replace=False)] if rng.random() < 0.5 else []
        if excluded:
            params["exclude"] = excluded
        r = served.get(f"/users/{user}/recommendations", params=params)
        assert r.status_code == 200, r.text
        cards = r.json()["items"]
        ids = [c["item_id"] for c in cards]
        assert len(ids) == len(set(ids)) <= params["k"], (params, [(c["item_id"], c["explanation"]) for c in cards])
        user_idx = bundle.users.index.get(user, -1)
        seen = set(bundle.items.decode(bundle.histories.of(user_idx)[0].tolist())) if user_idx >= 0 else set()
        brand_counts: dict[str, int] = {}
        for pos, c in enumerate(cards):
            assert 0 < c["propensity"] <= 1
            if c["item_id"] == pinned:
                assert pos == 0
            if c["brand"]:
                brand_counts[c["brand"]] = brand_counts.get(c["brand"], 0) + 1
            if c["explanation"]["type"] != "exploration":
                continue
            explored_total += 1
            item = items[c["item_id"]]
            assert "trying it out" in c["explanation"]["text"]
            assert c["propensity"] < 1
            assert item["available"] and c["item_id"] not in seen and c["item_id"] not in excluded
            if "category" in params:
                assert params["category"].casefold() in {x.casefold() for x in item["categories"] or []}
            if "brand" in params:
                assert item["brand"] in params["brand"]
            if "price_min" in params:
                assert params["price_min"] <= item["price"] <= params["price_max"]
        if any(c["explanation"]["type"] == "exploration" for c in cards):
            assert max(brand_counts.values(), default=0) <= 3
        logged[r.json()["request_id"]] = [c["propensity"] for c in cards]
    assert explored_total > 50  # the property was checked on many explored slots, not vacuously
    served.app.state.services.impressions.flush()
    served.app.state.services.sink.flush()
    with open_store(tmp_path / "shop.duckdb", read_only=True) as store:
        imp = store.impressions().sort("request_id", "position")
    for rid, props in logged.items():
        assert imp.filter(pl.col("request_id") == rid)["propensity"].to_list() == pytest.approx(props), rid


def test_exploration_off_leaves_lists_and_propensities_as_they_were(shop: dict[str, Any], tmp_path: Path) -> None:
    with _client(shop, tmp_path, ExploreConfig(), RulesConfig()) as c:
        cards = c.get(f"/users/{shop['users'][0]}/recommendations", params={"k": 10}).json()["items"]
    assert cards and all("propensity" not in card and card["explanation"]["type"] != "exploration" for card in cards)


def test_the_state_in_the_bundle_is_what_every_server_explores_with(shop: dict[str, Any], tmp_path: Path) -> None:
    """A bundle whose state says one new item earns clicks: a server loading it puts that item in the slot."""
    import shutil

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(shop["bundle"], bundle_dir)
    star, others = shop["new"][0], shop["new"][1:]
    state = ExploreState(item_ids=(star, *others), shown=np.full(NEW, 150.0),
                         rewards=np.r_[60.0, np.full(NEW - 1, 2.0)])
    bundle = Bundle.load(bundle_dir, search=False)
    bundle.explore = state
    bundle.save(bundle_dir, data_fingerprint=bundle.manifest["data_fingerprint"], metrics=bundle.manifest["metrics"])
    explore = ExploreConfig(enabled=True, share=1.0, slots=(3,))
    with _client(shop, tmp_path, explore, RulesConfig(exclude_seen="none"), bundle=bundle_dir) as c:
        assert c.put("/items", json={"items": shop["launches"]}).status_code == 200
        picks = [c.get(f"/users/anon-{n}/recommendations", params={"k": 5}).json()["items"][2]["item_id"]
                 for n in range(40)]
    assert picks.count(star) >= 35, picks
