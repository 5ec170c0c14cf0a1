"""SearchEngine store features on the synthetic store (lexical only, fast) and a tiny hybrid catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.search.engine import SearchEngine
from aisle.search.evaluate import judgments_from_events
from aisle.search.query import Filters
from aisle.types import Item, items_frame


@pytest.fixture(scope="module")
def store():
    return generate(SyntheticConfig(n_items=1500, n_users=300, n_events=20_000, seed=1))


@pytest.fixture(scope="module")
def engine(store) -> SearchEngine:
    pop = store.events.filter(pl.col("event_type") == "purchase").group_by("item_id").len()
    return SearchEngine.build(store.items, dense=False, popularity=dict(pop.iter_rows()))


def test_relevant_hits_and_what_matched(engine: SearchEngine) -> None:
    r = engine.search("waterproof hiking boots")
    assert r.total > 0 and r.hits
    assert all("hiking boots" in h.title.lower() for h in r.hits[:5])
    assert "title" in r.hits[0].matched["fields"] and "boot" in r.hits[0].matched["terms"]


def test_extracted_price_and_color_filter_the_results(engine: SearchEngine, store) -> None:
    r = engine.search("black phone case under $20", page_size=50)
    assert r.filters.price_max == 20.0 and r.filters.attributes == {"color": ["black"]}
    assert r.total > 0
    assert all(h.price is not None and h.price <= 20.0 for h in r.hits)
    attrs = dict(zip(store.items["item_id"], store.items["attributes"], strict=True))
    assert all('"color": "black"' in attrs[h.item_id] for h in r.hits)


def test_explicit_filters_and_facets_count_the_whole_result_set(engine: SearchEngine) -> None:
    r = engine.search("shoes", page_size=5)
    assert r.total > 5
    brands = {f["value"]: f["count"] for f in r.facets["brand"]}
    assert sum(b["count"] for b in r.facets["price"]) == r.total  # synthetic items all have prices
    brand = max(brands, key=brands.get)
    only = engine.search("shoes", filters=Filters(brands=[brand]), page_size=100)
    assert only.total == brands[brand]
    assert {h.brand for h in only.hits} == {brand}
    assert only.facets["brand"] == [{"value": brand, "count": brands[brand]}]


def test_sorting_and_pagination(engine: SearchEngine) -> None:
    first = engine.search("phone", sort="price_asc", page=1, page_size=10)
    second = engine.search("phone", sort="price_asc", page=2, page_size=10)
    prices = [h.price for h in first.hits + second.hits]
    assert prices == sorted(prices)
    assert not {h.item_id for h in first.hits} & {h.item_id for h in second.hits}
    desc = engine.search("phone", sort="price_desc", page_size=10)
    assert [h.price for h in desc.hits] == sorted((h.price for h in desc.hits), reverse=True)
    pop = engine.search("phone", sort="popularity", page_size=10)
    values = engine.catalog.popularity[engine.item_rows([h.item_id for h in pop.hits])]
    assert list(values) == sorted(values, reverse=True)
    with pytest.raises(ValueError, match="unknown sort"):
        engine.search("phone", sort="cheapest")  # type: ignore[arg-type]


def test_did_you_mean(engine: SearchEngine) -> None:
    r = engine.search("waterprof hikng boots")
    assert r.did_you_mean == "waterproof hiking boots"
    assert r.hits and "hiking boots" in r.hits[0].title.lower()


def test_zero_result_recovery_relaxes_filters_then_drops_words(engine: SearchEngine) -> None:
    r = engine.search("hiking boots under $1")  # no boots that cheap: the extracted price is relaxed
    assert r.total > 0 and r.relaxed == ["price=-1"]
    r = engine.search("qqqzzzx boots vvvxxq")  # 2 of 3 words must match, two match nothing: one is dropped
    assert r.total > 0 and r.relaxed == ["dropped word 'qqqzzzx'"]
    r = engine.search("zzzqqq")
    assert r.total == 0 and r.hits == []


def test_an_empty_query_browses_the_filtered_catalog(engine: SearchEngine, store) -> None:
    """A category page: every item of the category, most popular first; a price-only query filters the catalog."""
    leaf = store.items["categories"][0][-1]
    r = engine.search("", filters=Filters(categories=[leaf]), page_size=200)
    in_leaf = [c[-1] == leaf for c in store.items["categories"]]
    assert r.total == sum(in_leaf) > 0 and len(r.hits) == min(200, r.total)
    assert r.facets["category"][0]["count"] == r.total
    pops = engine.catalog.popularity[engine.item_rows([h.item_id for h in r.hits])]
    assert list(pops) == sorted(pops, reverse=True)
    cheap = engine.search("under $10", sort="price_desc", page_size=50)
    prices = [h.price for h in cheap.hits]
    assert cheap.filters.price_max == 10.0 and cheap.total > 0 and max(prices) <= 10.0
    assert prices == sorted(prices, reverse=True)
    assert engine.search("").total == len(engine.catalog)


def test_personalization_reorders_towards_affinity(engine: SearchEngine) -> None:
    base = engine.search("phone case", page_size=10)
    brands = [h.brand for h in base.hits]
    target = brands[-1]
    boosted = engine.search("phone case", page_size=10, user_affinity={"brands": {target: 1.0}})
    first_target = [h.brand for h in boosted.hits].index(target)
    assert first_target < brands.index(target) or first_target == 0
    assert boosted.total == base.total


def test_reranker_trained_on_the_store_log_and_save_load(engine: SearchEngine, store, tmp_path: Path) -> None:
    from aisle.search import evaluate as ev

    judg = judgments_from_events(store.events)
    judged = ev.judged_queries(judg, engine)
    prep = ev.prepare(engine, [j.query for j in judged])
    engine_r = SearchEngine(engine.catalog, engine.lexical, None, engine.spell)
    engine_r.reranker = ev.fit(prep, ev.head_gains(prep, judged), list(range(len(prep))))
    r = engine_r.search("ionic hair dryer", page_size=5)
    assert r.hits and "hair dryer" in r.hits[0].title.lower()
    engine_r.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "reranker.txt").read_text().startswith("tree")
    assert not list((tmp_path / "idx").rglob("*.pkl"))
    back = SearchEngine.load(tmp_path / "idx")
    for q in ("ionic hair dryer", "black phone case under $20", "waterprof hikng boots"):
        a, b = engine_r.search(q, page_size=10), back.search(q, page_size=10)
        assert [h.item_id for h in a.hits] == [h.item_id for h in b.hits]
        assert np.allclose([h.score for h in a.hits], [h.score for h in b.hits])
        assert a.total == b.total and a.facets == b.facets


HYBRID = [
    Item("a", "Cordless drill driver 20V", brand="Volt", categories=("Tools", "Drills"), price=99.0),
    Item("b", "Hammer drill with masonry bits", brand="Volt", categories=("Tools", "Drills"), price=149.0),
    Item("c", "Claw hammer 16 oz fiberglass handle", brand="Forge", categories=("Tools", "Hammers"), price=19.0),
    Item("d", "Garden hose 50 ft", brand="Green", categories=("Garden", "Hoses"), price=29.0),
    Item("e", "Lawn sprinkler oscillating", brand="Green", categories=("Garden", "Sprinklers"), price=24.0),
    Item("f", "Sofa couch three seater grey fabric", brand="Comfy", categories=("Home", "Sofas"), price=499.0),
]


def test_hybrid_dense_finds_paraphrases_and_round_trips(tmp_path: Path) -> None:
    eng = SearchEngine.build(items_frame(HYBRID), cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "all-MiniLM-L6-v2" / "cache.npz").exists()
    r = eng.search("something to water the yard")  # no lexical match for most words: dense recall
    assert {h.item_id for h in r.hits[:2]} & {"d", "e"}
    assert any(h.matched["dense"] for h in r.hits)
    eng.save(tmp_path / "idx")
    back = SearchEngine.load(tmp_path / "idx", embedder=eng.embedder)
    ids = [h.item_id for h in eng.search("cordless drill").hits]
    assert [h.item_id for h in back.search("cordless drill").hits] == ids
    again = SearchEngine.build(items_frame(HYBRID), cache_dir=tmp_path / "cache")  # all vectors from the cache
    assert np.allclose(again.dense.vectors, eng.dense.vectors)


def test_more_like_an_item_is_its_dense_neighbours_under_the_filters(tmp_path: Path) -> None:
    """"More like the second one": the items closest in meaning to that hit, never itself, within the filters;
    and each hit records the cosine that brought it in (what its explanation shows)."""
    eng = SearchEngine.build(items_frame(HYBRID), cache_dir=tmp_path / "cache")
    rows, sims = eng.more_like("a", Filters(), 3)
    like = [eng.catalog.item_ids[r] for r in rows]
    assert "a" not in like and like[0] == "b" and (np.diff(sims) <= 1e-6).all()  # the other drill first
    rows, _ = eng.more_like("a", Filters(price_max=50.0), 5)
    assert rows.size and all(eng.catalog.price[r] <= 50 for r in rows)
    assert eng.more_like("nope", Filters(), 3) is None
    assert SearchEngine.build(items_frame(HYBRID), dense=False).more_like("a", Filters(), 3) is None
    hit = next(h for h in eng.search("something to water the yard").hits if h.matched["dense"])
    assert 0 < hit.matched["dense_similarity"] <= 1
