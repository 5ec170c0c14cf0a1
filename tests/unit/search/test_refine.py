"""Every refinement kind of `aisle.search.refine`, over a small synthetic catalog's search engine, and the fallback:
an utterance the rules do not cover starts a new search, never an error."""

from __future__ import annotations

import pytest

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.search.engine import SearchEngine
from aisle.search.refine import KINDS, Refiner, SearchState, size_of
from aisle.serve.conversation import refiner_for


@pytest.fixture(scope="module")
def engine() -> SearchEngine:
    return SearchEngine.build(generate(SyntheticConfig(n_items=600, n_users=50, n_events=2_000, seed=5)).items,
                              dense=False)


@pytest.fixture(scope="module")
def refiner(engine: SearchEngine) -> Refiner:
    return refiner_for(engine)


def _shown(engine: SearchEngine, query: str) -> SearchState:
    res = engine.search(query, page_size=10)
    return SearchState(query=query, shown=[{"item_id": h.item_id, "title": h.title, "brand": h.brand,
                                            "price": h.price} for h in res.hits])


def _brands(engine: SearchEngine, state: SearchState) -> list[str]:
    return sorted({h["brand"] for h in state.shown if h["brand"]})


def test_every_kind_is_covered_here() -> None:
    tested = {"price_max", "price_min", "price_range", "cheaper", "pricier", "attribute", "bigger", "smaller",
              "brand", "exclude_brand", "like", "in_stock", "sort", "undo"}
    assert tested == set(KINDS)


@pytest.mark.parametrize(("utterance", "kind", "lo", "hi"), [
    ("under $40", "price_max", None, 40.0), ("less than 25 dollars", "price_max", None, 25.0),
    ("over $100", "price_min", 100.0, None), ("between $20 and $40", "price_range", 20.0, 40.0)])
def test_price_bounds(engine: SearchEngine, refiner: Refiner, utterance: str, kind: str, lo: float | None,
                      hi: float | None) -> None:
    r = refiner.refine(_shown(engine, "coffee beans"), utterance)
    assert r.kind == "refine" and r.changes[0]["kind"] == kind
    assert r.state.filters.get("price_min") == lo and r.state.filters.get("price_max") == hi
    assert r.state.query == "coffee beans"


def test_cheaper_and_pricier_are_relative_to_what_was_shown(engine: SearchEngine, refiner: Refiner) -> None:
    before = _shown(engine, "headphones")
    prices = sorted(h["price"] for h in before.shown)
    median = (prices[len(prices) // 2] + prices[(len(prices) - 1) // 2]) / 2
    cheaper = refiner.refine(before, "something cheaper")
    assert cheaper.changes[0]["kind"] == "cheaper" and cheaper.state.filters["price_max"] < median
    pricier = refiner.refine(before, "more expensive")
    assert pricier.changes[0]["kind"] == "pricier" and pricier.state.filters["price_min"] > median
    assert "under $" in cheaper.state.understood


def test_attribute_values_come_from_the_catalog(engine: SearchEngine, refiner: Refiner) -> None:
    r = refiner.refine(_shown(engine, "hiking boots"), "in brown")
    assert r.changes == [{"kind": "attribute", "key": "color", "values": ["brown"]}]
    assert r.state.understood.startswith("showing brown hiking boots")
    again = refiner.refine(r.state, "black ones")  # a new colour replaces the old one, words included
    assert again.state.filters["attributes"]["color"] == ["black"] and "brown" not in again.state.query


@pytest.mark.parametrize(("utterance", "kind"), [("bigger", "bigger"), ("a smaller one", "smaller")])
def test_bigger_and_smaller_use_the_sized_attribute(engine: SearchEngine, refiner: Refiner, utterance: str,
                                                    kind: str) -> None:
    before = _shown(engine, "memory card")
    r = refiner.refine(before, utterance)
    change = r.changes[0]
    assert r.kind == "refine" and change["kind"] == kind and change["key"] == "capacity"
    sizes = [size_of(v) for v in r.state.filters["attributes"]["capacity"]]
    assert sizes and all((s > change["reference"]) if kind == "bigger" else (s < change["reference"]) for s in sizes)


def test_sizes_compare_across_units() -> None:
    assert size_of("12 oz") < size_of("2 lb") and size_of("512GB") < size_of("1TB") and size_of("S") < size_of("XL")
    assert size_of("blue") is None


def test_brand_only_and_without(engine: SearchEngine, refiner: Refiner) -> None:
    before = _shown(engine, "headphones")
    brand = _brands(engine, before)[0]
    only = refiner.refine(before, f"only {brand}")
    assert only.changes == [{"kind": "brand", "brands": [brand]}] and only.state.filters["brands"] == [brand]
    without = refiner.refine(only.state, f"without {brand}")
    assert without.state.filters["exclude_brands"] == [brand] and not without.state.filters.get("brands")
    that = refiner.refine(before, "not that brand")
    assert that.state.filters["exclude_brands"] == [before.shown[0]["brand"]]
    assert f"not {before.shown[0]['brand']}" in that.state.understood


def test_more_like_the_nth_hit(engine: SearchEngine, refiner: Refiner) -> None:
    before = _shown(engine, "tents")
    r = refiner.refine(before, "more like the second one")
    assert r.changes[0] == {"kind": "like", "item_id": before.shown[1]["item_id"], "position": 2}
    assert r.state.like == before.shown[1]["item_id"]
    assert refiner.refine(before, "similar to #3").state.like == before.shown[2]["item_id"]
    beyond = refiner.refine(before, "more like the 40th one")  # nothing there: read as a new search
    assert beyond.kind == "new_search"


def test_in_stock_and_sort(engine: SearchEngine, refiner: Refiner) -> None:
    before = _shown(engine, "blender")
    assert refiner.refine(before, "only in stock").state.filters == {"available": True}
    assert refiner.refine(before, "cheapest first").state.sort == "price_asc"
    assert refiner.refine(before, "most popular").state.sort == "popularity"


def test_several_refinements_in_one_utterance(engine: SearchEngine, refiner: Refiner) -> None:
    r = refiner.refine(_shown(engine, "hiking boots"), "cheaper brown ones in stock")
    assert {c["kind"] for c in r.changes} == {"cheaper", "attribute", "in_stock"}


def test_undo_is_understood(engine: SearchEngine, refiner: Refiner) -> None:
    before = _shown(engine, "tents")
    for text in ("undo", "go back"):
        assert refiner.refine(before, text).kind == "undo"


@pytest.mark.parametrize("utterance", ["show me coffee makers", "waterproof hiking boots for winter",
                                       "what is the meaning of life", "!!!", "bigger tents"])
def test_anything_else_is_a_new_search(engine: SearchEngine, refiner: Refiner, utterance: str) -> None:
    r = refiner.refine(_shown(engine, "sunscreen"), utterance)
    assert r.kind == "new_search" and r.changes == [] and r.state.filters == {}


def test_without_a_previous_search_every_utterance_is_a_new_search(refiner: Refiner) -> None:
    r = refiner.refine(None, "cheaper")
    assert r.kind == "new_search" and r.state.query == "cheaper"


def test_the_previous_state_is_not_changed(engine: SearchEngine, refiner: Refiner) -> None:
    before = _shown(engine, "hiking boots")
    first = refiner.refine(before, "in brown")
    refiner.refine(first.state, "in black")
    assert first.state.filters["attributes"]["color"] == ["brown"]
