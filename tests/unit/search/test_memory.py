"""The search memory: what shoppers engaged with after similar logged searches, recalled for a new query, never
from the query's own log entries when the reranker learns from it, and kept with a saved index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.search import evaluate as ev
from aisle.search.engine import SearchEngine
from aisle.search.explain import explain_hit
from aisle.search.memory import FEATURES, SearchMemory
from aisle.search.text import normalize
from aisle.types import Item, items_frame

ITEMS = [
    Item("elbow", "Charlotte Pipe Schedule 40 fitting socket", brand="Charlotte", categories=("Plumbing",),
         price=1.2),
    Item("tee", "PVC tee 3/4 in. slip", brand="Charlotte", categories=("Plumbing",), price=1.5),
    Item("hose", "Garden hose 50 ft", brand="Green", categories=("Garden",), price=29.0),
    Item("sprinkler", "Lawn sprinkler oscillating", brand="Green", categories=("Garden",), price=24.0),
    Item("drill", "Cordless drill driver 20V", brand="Volt", categories=("Tools",), price=99.0),
    Item("sofa", "Sofa couch three seater grey fabric", brand="Comfy", categories=("Home",), price=499.0),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    return SearchEngine.build(items_frame(ITEMS), cache_dir=tmp_path_factory.mktemp("cache"))


def _logged(engine: SearchEngine, entries: list[tuple[str, str, float]]) -> list[ev.JudgedQuery]:
    """Judged queries from (query, item id, relevance on the 1-3 scale) rows."""
    import polars as pl

    return ev.judged_queries(pl.DataFrame(entries, schema=["query", "item_id", "relevance"], orient="row"), engine)


def test_a_near_variant_of_a_logged_query_gets_the_product_it_led_to(engine: SearchEngine) -> None:
    engine.memory = ev.search_memory(engine, _logged(engine, [("1/2 in. pvc elbow 90", "elbow", 3.0),
                                                              ("garden hose", "hose", 3.0)]))
    try:
        pq, _ = engine.understand("pvc elbow 1/2")
        rec = engine.recall(engine.query_vector(pq))
        assert rec is not None and rec.top_sim > 0.8
        elbow = engine.item_rows(["elbow"])[0]
        assert elbow in rec.top(5).tolist()
        f = dict(zip(FEATURES, rec.features(np.array([elbow]))[0].tolist(), strict=True))
        assert f["mem_score"] > 0 and f["mem_best_gain"] == 2.0 and f["mem_best_sim"] == pytest.approx(rec.top_sim)
        result = engine.search("pvc elbow 1/2")
        hits = [h.item_id for h in result.hits]
        assert hits[:2].count("elbow") == 1  # the memory brings in a product whose title has none of the words
        hit = result.hits[hits.index("elbow")]
        assert hit.matched["memory_similarity"] == pytest.approx(rec.top_sim, abs=1e-4)
        why = explain_hit({"matched": hit.matched}, query="pvc elbow 1/2", filters={})
        assert "shoppers chose it after a similar search" in why["text"] and why["memory_similarity"]
        assert all(h.matched["memory_similarity"] is None for h in result.hits if h.item_id != "elbow")
        # a query unlike every logged one recalls nothing, and the engine ranks as without a memory
        pq, _ = engine.understand("grey sofa")
        far = engine.recall(engine.query_vector(pq))
        assert far is not None and not len(far.rows)
    finally:
        engine.memory = None
    without = [h.item_id for h in engine.search("pvc elbow 1/2").hits]
    assert "elbow" not in without[:2]


def test_cross_fitted_memories_never_hold_a_query_own_judgments(engine: SearchEngine) -> None:
    queries = ["PVC Elbow", "pvc elbow", "pvc  elbow fitting", "garden hose", "hose 50 ft", "lawn sprinkler",
               "cordless drill", "drill 20v", "grey sofa", "couch", "pvc tee", "tee 3/4"]
    items = ["elbow", "elbow", "elbow", "hose", "hose", "sprinkler", "drill", "drill", "sofa", "sofa", "tee", "tee"]
    judged = _logged(engine, [(q, i, 3.0) for q, i in zip(queries, items, strict=True)])
    fit_idx = np.array([i for i, j in enumerate(judged) if not ev.is_held_out(j.query)])
    assert 0 < len(fit_idx) < len(judged)  # some queries on each side of the held-out split
    memories, fitted = ev.cross_fitted_memories(engine, judged, fit_idx)
    assert sorted(fitted.queries) == sorted(judged[i].query for i in fit_idx)
    for i, j in enumerate(judged):
        own = {q for q in memories[i].queries if normalize(q) == normalize(j.query)}
        assert not own, (j.query, own)  # neither itself nor an identical normalised query ("PVC Elbow")
        if i in set(fit_idx.tolist()):
            assert set(memories[i].queries) == {q for q in fitted.queries
                                                if ev.fold_of(q, 5) != ev.fold_of(j.query, 5)}
        else:
            assert memories[i] is fitted  # a held-out query sees every fitted query, none of its own fold
    # and through `prepare`: the recalled products of a query come from the other folds only
    prep = ev.prepare(engine, [j.query for j in judged], memories=memories)
    alone = {i for i, j in enumerate(judged) if sum(normalize(k.query) == normalize(j.query) for k in judged) == 1}
    for i in alone:
        assert prep[i].memory_sim < 0.999


def test_the_memory_is_saved_with_the_index_and_follows_catalog_changes(engine: SearchEngine, tmp_path: Path) -> None:
    engine.memory = ev.search_memory(engine, _logged(engine, [("1/2 in. pvc elbow 90", "elbow", 3.0),
                                                              ("1/2 in. pvc elbow 90", "tee", 1.0)]))
    try:
        engine.save(tmp_path / "idx")
        back = SearchEngine.load(tmp_path / "idx", embedder=engine.embedder)
        assert back.memory is not None and back.memory.queries == engine.memory.queries
        a, b = engine.search("pvc elbow 1/2"), back.search("pvc elbow 1/2")
        assert [h.item_id for h in a.hits] == [h.item_id for h in b.hits]
        # the catalog rebuilt without the elbow: the memory keeps the tee (gain 0) under its new row, drops the elbow
        rebuilt = engine.with_catalog(items_frame([i for i in ITEMS if i.item_id != "elbow"]))
        assert rebuilt.memory is not None
        kept = [rebuilt.catalog.item_ids[r] for r in rebuilt.memory.rows.tolist()]
        assert kept == ["tee"]
    finally:
        engine.memory = None


def test_without_drops_exactly_the_masked_queries() -> None:
    vecs = np.eye(3, dtype=np.float32)
    mem = SearchMemory(["a", "b", "c"], vecs, np.array([0, 2, 2, 3]), np.array([5, 6, 7]),
                       np.array([2.0, 1.0, 0.0]))
    sub = mem.without(np.array([True, False, False]))
    assert sub.queries == ["b", "c"] and sub.rows.tolist() == [7] and sub.indptr.tolist() == [0, 0, 1]
    rec = mem.recall(vecs[0])
    assert rec.rows.tolist() == [5, 6] and rec.score.tolist() == [2.0, 1.0]  # only query "a" is alike
    assert mem.without(np.ones(3, bool)).recall(vecs[0]).top_sim == 0.0
