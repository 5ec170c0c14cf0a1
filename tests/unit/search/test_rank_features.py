"""The reranker features added for issue 25 (proximity, the title's product word, measure conflicts, place in the
result set), read through `SearchEngine.head_features` on a small hand-made catalog, and the query types."""

from __future__ import annotations

import numpy as np
import pytest

from aisle.search.engine import SearchEngine
from aisle.search.features import FEATURES, measure_unit
from aisle.search.lexical import title_head, windows
from aisle.search.querytypes import classify
from aisle.types import Item, items_frame

TITLES = {
    "a": "Philips 60-Watt equivalent A19 LED light bulb",
    "b": "GE 100-Watt incandescent light bulb",
    "c": "Soft white light bulb",
    "d": "KOHLER elongated toilet seat in white",
    "e": "Toilet seat hinge for KOHLER elongated toilet",
    "f": "Hampton Bay 52 in. ceiling fan with light",
    "g": "Light for ceiling fan, 52 in. glass bowl",
    "h": "Bulb light LED, not a 60-Watt",
}
PRICES = {"a": 5.0, "b": 2.0, "c": 1.0, "d": 30.0, "e": 8.0, "f": 99.0, "g": 20.0, "h": None}


@pytest.fixture(scope="module")
def engine() -> SearchEngine:
    items = items_frame([Item(item_id=k, title=t, price=PRICES[k]) for k, t in TITLES.items()])
    return SearchEngine.build(items, dense=False, popularity={"a": 10, "b": 3, "c": 1, "d": 7, "e": 2})


def features(engine: SearchEngine, query: str) -> dict[str, dict[str, float]]:
    """{item id: {feature: value}} over the query's eligible candidates."""
    pq, terms = engine.understand(query)
    ranked = engine.eligible(engine.retriever.candidates(terms, None, fusion=engine.fusion), terms)
    x = engine.head_features(pq, terms, ranked)
    assert x.shape == (len(ranked), len(FEATURES))
    ids = [engine.catalog.item_ids[r] for r in ranked.rows]
    return {i: dict(zip(FEATURES, map(float, row), strict=True)) for i, row in zip(ids, x, strict=True)}


def test_title_head_is_the_product_word_not_the_accessory() -> None:
    assert title_head(TITLES["d"]) == ["seat"]
    assert title_head(TITLES["f"]) == ["fan"]  # "52 in." is a size, not "in <word>"
    assert title_head("") == []
    assert "ceil~fan" in windows(["hampton", "bay", "ceil", "fan", "light"])
    assert "hampton~light" not in windows(["hampton", "bay", "ceil", "fan", "light"])


def test_head_match_and_proximity_tell_the_product_from_its_accessory(engine: SearchEngine) -> None:
    f = features(engine, "toilet seat")
    assert f["d"]["title_head_match"] == 1.0 and f["e"]["title_head_match"] == 0.0  # e sells a hinge
    assert f["d"]["window_ratio"] == 1.0
    f = features(engine, "ceiling fan")
    assert f["f"]["title_head_match"] == 1.0 and f["g"]["title_head_match"] == 0.0
    assert features(engine, "seat")["d"]["window_ratio"] == -1.0  # one word: no pair to be near


def test_a_different_value_in_the_same_unit_is_a_conflict(engine: SearchEngine) -> None:
    assert (measure_unit("60w"), measure_unit("1/2in"), measure_unit("2x4"), measure_unit("bulb")) == \
        ("w", "in", "x", None)
    f = features(engine, "60 watt light bulb")
    assert f["a"]["measure_conflict"] == 0.0  # says 60 W
    assert f["b"]["measure_conflict"] == 1.0  # says 100 W
    assert f["c"]["measure_conflict"] == 0.0  # says no wattage at all
    assert features(engine, "light bulb")["b"]["measure_conflict"] == 0.0  # the query gave no measure


def test_conflicts_follow_catalog_upserts(engine: SearchEngine) -> None:
    new = engine.with_items(items_frame([Item(item_id="c", title="Soft white 40-Watt light bulb")]))
    assert features(new, "60 watt light bulb")["c"]["measure_conflict"] == 1.0
    assert features(engine, "60 watt light bulb")["c"]["measure_conflict"] == 0.0  # the old engine is unchanged


def test_price_and_popularity_place_within_the_result_set(engine: SearchEngine) -> None:
    f = features(engine, "light bulb")
    prices = {k: v["price_pct"] for k, v in f.items()}
    assert prices["c"] == 0.0 and prices["c"] < prices["b"] < prices["a"] <= 1.0  # c the cheapest of the set
    assert prices["h"] == -1.0  # no price
    assert max(prices.values()) == 1.0
    assert f["a"]["popularity_rel"] == 1.0 and f["a"]["popularity_pct"] == 1.0  # the set's best seller
    assert f["c"]["price_rel"] < f["b"]["price_rel"] < f["a"]["price_rel"]


def test_query_types(engine: SearchEngine) -> None:
    def types(q: str) -> tuple[str, ...]:
        return classify(*engine.understand(q), engine.lexical)

    assert "unit" in types("60 watt bulb")
    assert "typo" in types("ligth bulb")
    assert "long_tail" in types("white light bulb for the ceiling fan")
    assert types("light bulb") == ("plain",)


def test_every_feature_is_finite_on_a_real_sized_set() -> None:
    titles = [f"{w} {n}-Watt bulb {c}" for w in ("Soft", "Warm", "Daylight") for n in (40, 60, 75, 100)
              for c in ("white", "clear", "frosted")]
    engine = SearchEngine.build(items_frame([Item(item_id=str(i), title=t) for i, t in enumerate(titles)]),
                                dense=False)
    for q in ("60 watt soft white bulb", "bulb", "2x4 stud"):
        pq, terms = engine.understand(q)
        ranked = engine.eligible(engine.retriever.candidates(terms, None), terms)
        x = engine.head_features(pq, terms, ranked)
        assert np.isfinite(x).all()
    assert len(x) == 0 or x.shape[1] == len(FEATURES)
