"""The synthetic store: deterministic, in the canonical schemas, and carrying the signal it promises."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.synthetic import SyntheticConfig, SyntheticStore, generate
from aisle.data.synthetic.vocab import COMPLEMENTS, QUERY_WORDS
from aisle.types import EVENT_SCHEMA, ITEM_SCHEMA, USER_SCHEMA

SMALL = SyntheticConfig(n_items=500, n_users=200, n_events=20_000, seed=0)


@pytest.fixture(scope="module")
def small() -> SyntheticStore:
    return generate(SMALL)


@pytest.fixture(scope="module")
def default() -> SyntheticStore:
    return generate(SyntheticConfig())


def _counts(ev: pl.DataFrame) -> dict[str, int]:
    return dict(ev.group_by("event_type").len().iter_rows())


def _with_leaf(store: SyntheticStore) -> pl.DataFrame:
    leaf = store.items.select("item_id", pl.col("categories").list.last().alias("leaf"),
                              pl.col("categories").list.first().alias("top"))
    return store.events.join(leaf, on="item_id", how="left")


def test_same_seed_same_frames_different_seed_differs(small: SyntheticStore) -> None:
    again = generate(SMALL)
    assert again.items.equals(small.items) and again.users.equals(small.users) and again.events.equals(small.events)
    other = generate(SyntheticConfig(n_items=500, n_users=200, n_events=20_000, seed=1))
    assert not other.events.equals(small.events)
    assert not other.items.equals(small.items)


def test_frames_have_exactly_the_canonical_schemas(small: SyntheticStore) -> None:
    assert dict(small.items.schema) == ITEM_SCHEMA
    assert dict(small.users.schema) == USER_SCHEMA
    assert dict(small.events.schema) == EVENT_SCHEMA


def test_exact_counts_and_progress() -> None:
    seen: list[tuple[int, int]] = []
    store = generate(SyntheticConfig(n_items=300, n_users=100, n_events=5_000, seed=3),
                     progress=lambda done, total: seen.append((done, total)))
    assert (store.events.height, store.items.height, store.users.height) == (5_000, 300, 100)
    assert seen[-1] == (5_000, 5_000)
    assert all(a[0] <= b[0] for a, b in pairwise(seen))


def test_default_config_sizes(default: SyntheticStore) -> None:
    assert abs(default.events.height - 200_000) <= 2_000
    assert default.items.height == 5_000
    assert default.users.height == 2_000


def test_category_tree_has_20_plus_leaves_two_or_three_deep(small: SyntheticStore) -> None:
    paths = {tuple(p) for p in small.items["categories"].to_list()}
    assert len(paths) >= 20
    assert {len(p) for p in paths} <= {2, 3}
    assert {p[0] for p in paths} == {"Outdoors", "Electronics", "Home", "Beauty", "Sports"}
    assert ("Outdoors", "Footwear", "Hiking boots") in paths
    assert ("Electronics", "Camera accessories", "Memory cards") in paths


def test_items_are_realistic(small: SyntheticStore) -> None:
    items = small.items
    assert items["title"].n_unique() == items.height  # distinct enough for search
    assert (items["price"] > 0).all()
    assert set(items["currency"].unique()) == {"USD"}
    available = items["available"].mean()
    assert 0.9 < available < 1.0  # a few sold out
    start = SMALL.start
    late = (items["created_at"] > start).mean()
    assert 0.05 < late < 0.25  # cold-start items launch during the span
    attrs = [json.loads(a) for a in items["attributes"].to_list()]
    assert all(isinstance(a, dict) and a for a in attrs)
    boots = items.filter(pl.col("categories").list.last() == "Hiking boots")
    assert {"color", "material", "size", "gender"} <= set(json.loads(boots["attributes"][0]))
    # each leaf has its own price level: cameras cost far more than memory cards
    med = dict(items.group_by(pl.col("categories").list.last().alias("leaf")).agg(pl.col("price").median()).iter_rows())
    assert med["Mirrorless cameras"] > 10 * med["Memory cards"]
    assert len(set(med.values())) > 20


def test_no_event_before_an_item_exists(small: SyntheticStore) -> None:
    ev = small.events.join(small.items.select("item_id", "created_at"), on="item_id")
    assert (ev["timestamp"] >= ev["created_at"]).all()


def test_users_have_attributes(small: SyntheticStore) -> None:
    attrs = [json.loads(a) for a in small.users["attributes"].to_list()]
    assert all({"segment", "region"} <= set(a) for a in attrs)
    assert {a["segment"] for a in attrs} == {"budget", "mainstream", "premium"}


def test_events_are_well_formed(small: SyntheticStore) -> None:
    ev = small.events
    assert ev["event_id"].n_unique() == ev.height
    assert ev["event_id"].to_list() == sorted(ev["event_id"].to_list())
    assert ev["timestamp"].is_sorted()  # ids follow time
    assert ev["timestamp"].min() >= SMALL.start and ev["timestamp"].max() < SMALL.end
    assert ev.group_by("session_id").agg(pl.col("user_id").n_unique())["user_id"].max() == 1
    assert ev.filter(pl.col("event_type") != "search")["item_id"].null_count() == 0
    valued = pl.col("event_type").is_in(["rating", "purchase", "add_to_cart", "remove_from_cart"])
    assert ev.filter(~valued)["value"].null_count() == ev.filter(~valued).height
    ratings = ev.filter(pl.col("event_type") == "rating")["value"]
    assert ratings.is_in([1.0, 2.0, 3.0, 4.0, 5.0]).all() and ratings.mean() > 3.3  # J-shaped, as in shops
    qty = ev.filter(pl.col("event_type").is_in(["purchase", "add_to_cart"]))["value"]
    assert qty.min() >= 1 and qty.max() <= 3


def test_funnel_rates(small: SyntheticStore) -> None:
    c = _counts(small.events)
    assert c["view"] > c["add_to_cart"] > c["purchase"] > c["rating"]
    assert 0.07 <= c["add_to_cart"] / c["view"] <= 0.14
    assert 0.30 <= c["purchase"] / c["add_to_cart"] <= 0.55
    assert 0 < c["remove_from_cart"] < 0.2 * c["add_to_cart"]
    assert 0.05 <= c["click"] / c["view"] <= 0.5


def test_funnel_integrity(small: SyntheticStore) -> None:
    """Every purchase follows a view and a cart of the same item by the same shopper in the same session;
    every rating follows a purchase; every removal follows a cart."""
    ev = small.events
    key = ["user_id", "item_id", "session_id"]

    def first(kind: str, keys: list[str]) -> pl.DataFrame:
        return ev.filter(pl.col("event_type") == kind).group_by(keys).agg(pl.col("timestamp").min().alias(kind))

    buys = ev.filter(pl.col("event_type") == "purchase").join(first("view", key), on=key, how="left") \
        .join(first("add_to_cart", key), on=key, how="left")
    assert buys.height > 0
    assert buys.filter(pl.col("view").is_null() | (pl.col("view") >= pl.col("timestamp"))).height == 0
    assert buys.filter(pl.col("add_to_cart").is_null() | (pl.col("add_to_cart") >= pl.col("timestamp"))).height == 0
    rated = ev.filter(pl.col("event_type") == "rating").join(first("purchase", ["user_id", "item_id"]),
                                                            on=["user_id", "item_id"], how="left")
    assert rated.filter(pl.col("purchase").is_null() | (pl.col("purchase") >= pl.col("timestamp"))).height == 0
    removed = ev.filter(pl.col("event_type") == "remove_from_cart").join(first("add_to_cart", key), on=key, how="left")
    assert removed.filter(pl.col("add_to_cart").is_null() | (pl.col("add_to_cart") >= pl.col("timestamp"))).height == 0


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,.;:()]+", text.lower()) if w]


def _vocabulary(store: SyntheticStore) -> set[str]:
    vocab = set(QUERY_WORDS)
    for row in store.items.select("title", "description", "brand", "categories").iter_rows():
        words = _words(" ".join([row[0], row[1], row[2], *row[3]]))
        vocab.update(words)
        vocab.update(a + b for a, b in pairwise(words) if a[0].isdigit())  # "20 w" -> "20w"
    return vocab


def test_search_events_have_queries_some_with_typos(small: SyntheticStore) -> None:
    ev = small.events
    search = ev.filter(pl.col("event_type") == "search")
    assert search.height > 0.02 * ev.height
    assert search["item_id"].null_count() == search.height
    assert search["query"].null_count() == 0
    assert ev.filter(pl.col("event_type") != "search")["query"].null_count() == ev.height - search.height
    vocab = _vocabulary(small)
    queries = search["query"].to_list()
    oov = [q for q in queries if any(w not in vocab and not w.startswith("$") for w in _words(q))]
    assert 0.04 < len(oov) / len(queries) < 0.2, oov[:20]  # typo_rate is 0.1
    assert any(q.endswith(("under $50", "under $100", "under $500")) for q in queries)


def test_searches_are_followed_by_matching_views(small: SyntheticStore) -> None:
    """The view right after a (typo-free) search shows an item whose text contains the query's words."""
    ev = small.events.with_columns(pl.col("event_type").shift(-1).over("session_id").alias("next_type"),
                                   pl.col("item_id").shift(-1).over("session_id").alias("next_item"))
    text = small.items.select("item_id", pl.concat_str([pl.col("title"), pl.col("description"),
                                                         pl.col("categories").list.join(" ")], separator=" ")
                              .alias("text"))
    pairs = ev.filter((pl.col("event_type") == "search") & pl.col("next_item").is_not_null()) \
        .join(text, left_on="next_item", right_on="item_id")
    vocab = _vocabulary(small)
    hits = total = 0
    for query, body in pairs.select("query", "text").iter_rows():
        words = [w for w in _words(query) if w not in QUERY_WORDS and not w.startswith("$")]
        if not words or any(w not in vocab for w in words):
            continue  # typos and query-only words
        item_words = set(_words(body))
        item_words |= {a + b for a, b in pairwise(_words(body))}
        total += 1
        hits += all(w in item_words for w in words)
    assert total > 100
    assert hits / total > 0.6


def test_sessions_are_sequential(small: SyntheticStore) -> None:
    views = _with_leaf(small).filter(pl.col("event_type") == "view") \
        .with_columns(pl.col("leaf").shift(1).over("session_id").alias("prev")).filter(pl.col("prev").is_not_null())
    same = (views["leaf"] == views["prev"]).mean()
    share = views["leaf"].value_counts(normalize=True)["proportion"]
    chance = float((share**2).sum())
    assert same > 0.5 and same / chance > 10


def test_drift_outdoors_grows_towards_summer(small: SyntheticStore) -> None:
    ev = _with_leaf(small).filter(pl.col("top").is_not_null()).with_columns(pl.col("timestamp").dt.month().alias("m"))
    share = ev.group_by("m").agg((pl.col("top") == "Outdoors").mean().alias("s")).sort("m")
    jan, jun = share.filter(pl.col("m") == 1)["s"][0], share.filter(pl.col("m") == 6)["s"][0]
    assert jun > 1.3 * jan


def test_long_tail(default: SyntheticStore) -> None:
    counts = default.events.filter(pl.col("item_id").is_not_null())["item_id"].value_counts()["count"]
    top = counts.sort(descending=True).head(default.items.height // 10).sum()
    assert top / counts.sum() > 0.4


def test_complements_are_bought_after_their_anchor(default: SyntheticStore) -> None:
    """Shoppers who bought a camera (tent, phone, ...) later buy a memory card (sleeping bag, case, ...) far more
    often than buyers in general: observed / expected (independence) over all complement pairs."""
    buys = _with_leaf(default).filter(pl.col("event_type") == "purchase").select("user_id", "leaf", "timestamp")
    buyers = buys["user_id"].n_unique()
    observed = expected = 0.0
    for anchor, targets in COMPLEMENTS.items():
        first = buys.filter(pl.col("leaf") == anchor).group_by("user_id").agg(pl.col("timestamp").min())
        for target in targets:
            later = buys.filter(pl.col("leaf") == target)
            observed += first.join(later, on="user_id", suffix="_t") \
                .filter(pl.col("timestamp_t") > pl.col("timestamp"))["user_id"].n_unique()
            expected += first.height * later["user_id"].n_unique() / buyers
    assert observed / expected > 3


def test_write_and_read_back(small: SyntheticStore, tmp_path: Path) -> None:
    out = small.write(tmp_path / "store")
    assert {p.name for p in out.iterdir()} == {"items.parquet", "users.parquet", "events.parquet", "manifest.json",
                                                "README.md"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and manifest["rows"]["events"] == 20_000
    data = read_dataspec(f"aisle:{out}")
    for table, counts in data.accounting().items():
        assert counts["rejected"] == 0 and counts["loaded"] == counts["total"], table
    assert data.events.equals(small.events)
    assert data.items.equals(small.items)
    assert data.users.equals(small.users)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="n_items"):
        SyntheticConfig(n_items=5)
    with pytest.raises(ValueError, match="timezone"):
        SyntheticConfig(end=datetime(2026, 6, 30))
    assert SyntheticConfig().start == datetime(2026, 1, 1, tzinfo=UTC)


def test_replenishment_plants_cadences_and_leaves_the_base_store_alone(small: SyntheticStore) -> None:
    """`replenishment` > 0 adds regulars who rebuy consumables about every planted cadence; at 0 nothing changes
    (the same store as before the option existed, which the other tests here pin)."""
    from aisle.data.synthetic.replenish import CADENCE_DAYS

    same = generate(SyntheticConfig(**{**small.config.as_dict(), "end": small.config.end, "replenishment": 0.0}))
    assert same.events.equals(small.events)
    with pytest.raises(ValueError, match="replenishment"):
        SyntheticConfig(replenishment=1.5)
    store = generate(SyntheticConfig(n_items=1500, n_users=300, n_events=30_000, seed=4, replenishment=0.4))
    buys = (store.events.filter(pl.col("event_type") == "purchase")
            .join(store.items.select("item_id", pl.col("categories").list.last().alias("leaf")), on="item_id")
            .sort("timestamp"))
    gaps = (buys.group_by("user_id", "item_id", "leaf").agg(pl.col("timestamp").diff().dt.total_hours().drop_nulls()
                                                            .alias("gap")).explode("gap").drop_nulls("gap"))
    typical = gaps.group_by("leaf").agg((pl.col("gap") / 24).median().alias("days"), pl.len().alias("n"))
    found = {r["leaf"]: r["days"] for r in typical.iter_rows(named=True) if r["n"] >= 30}
    assert set(CADENCE_DAYS) <= set(found)
    for leaf, days in CADENCE_DAYS.items():  # each shopper's pace and the quantity bought spread it
        assert 0.6 * days < found[leaf] < 1.6 * days, (leaf, found[leaf], days)
    # every replenishment purchase keeps the funnel: a view and a cart of the item in the same session before it
    sessions = store.events.filter(pl.col("session_id").is_in(buys["session_id"].implode()))
    assert sessions.group_by("session_id", "item_id").agg(pl.col("event_type").unique()).filter(
        pl.col("event_type").list.contains("purchase") & ~pl.col("event_type").list.contains("add_to_cart")).is_empty()
