"""Catalog upserts as a delta (`SearchEngine.with_items`): what a rebuild would find, without the rebuild."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.search.catalog import Codes
from aisle.search.dense import DenseIndex
from aisle.search.engine import SearchEngine
from aisle.search.query import Filters


@pytest.fixture(scope="module")
def items() -> pl.DataFrame:
    return generate(SyntheticConfig(n_items=1500, n_users=300, n_events=20_000, seed=1)).items


@pytest.fixture(scope="module")
def engine(items: pl.DataFrame) -> SearchEngine:
    return SearchEngine.build(items, dense=False)


def _rebuilt(engine: SearchEngine, items: pl.DataFrame, ups: pl.DataFrame) -> SearchEngine:
    """What the catalog looks like built from scratch after the upsert (the path a bundle load takes)."""
    return engine.with_catalog(pl.concat([items.filter(~pl.col("item_id").is_in(ups["item_id"].implode())), ups]))


def _ids(engine: SearchEngine, query: str, **kw: object) -> list[str]:
    return [h.item_id for h in engine.search(query, page_size=50, **kw).hits]  # type: ignore[arg-type]


def test_an_upserted_item_is_found(engine: SearchEngine, items: pl.DataFrame) -> None:
    new = items.slice(3, 1).with_columns(pl.lit("new-1").alias("item_id"), pl.lit("Quuxter trail boots").alias("title"))
    delta = engine.with_items(new)
    assert "new-1" not in _ids(engine, "quuxter")
    r = delta.search("quuxter")
    assert [h.item_id for h in r.hits] == ["new-1"] and r.total == 1
    assert r.hits[0].matched["terms"] == ["quuxter"] and "title" in r.hits[0].matched["fields"]
    brand = new["brand"][0]
    assert "new-1" in _ids(delta, "quuxter boots", filters=Filters(brands=[brand]))
    assert delta.item_rows(["new-1"]).tolist() == [len(items)]  # appended: every other item keeps its row


def test_a_changed_title_no_longer_matches_its_old_words(engine: SearchEngine, items: pl.DataFrame) -> None:
    item = items.slice(7, 1)
    item_id, title = item["item_id"][0], item["title"][0]

    def title_match(engine: SearchEngine) -> tuple[list[str], list[str]]:
        """How the item matches a search for its old title: (fields, title words); its brand, category and
        attributes still match some of those words."""
        hit = next((h for h in engine.search(title, page_size=50).hits if h.item_id == item_id), None)
        return ([], []) if hit is None else (hit.matched["fields"], hit.matched["terms"])

    fields, words = title_match(engine)
    assert "title" in fields and "description" in fields and len(words) >= 5
    delta = engine.with_items(item.with_columns(pl.lit("Zorblax widget").alias("title"),
                                                pl.lit("A widget.").alias("description")))
    fields, words = title_match(delta)
    assert "title" not in fields and "description" not in fields and words == []
    assert _ids(delta, "zorblax") == [item_id]
    again = delta.with_items(item.with_columns(pl.lit("Plimbo widget").alias("title")))  # replaced twice
    assert _ids(again, "zorblax") == [] and _ids(again, "plimbo") == [item_id]


def test_an_unavailable_item_is_excluded_and_its_new_price_shown(engine: SearchEngine, items: pl.DataFrame) -> None:
    item = items.slice(11, 1)
    item_id, title = item["item_id"][0], item["title"][0]
    delta = engine.with_items(item.with_columns(pl.lit(False).alias("available"), pl.lit(1.25).alias("price")))
    assert item_id in _ids(engine, title, filters=Filters(available=True))
    assert item_id not in _ids(delta, title, filters=Filters(available=True))
    hit = next(h for h in delta.search(title, page_size=50).hits if h.item_id == item_id)
    assert hit.price == 1.25


def test_text_unchanged_scores_exactly_as_a_rebuild(engine: SearchEngine, items: pl.DataFrame) -> None:
    """A price or availability change leaves the collection statistics alone: the delta's scores are a rebuild's."""
    ups = items.slice(20, 10).with_columns(pl.col("price") * 3, pl.lit(False).alias("available"))
    delta, rebuilt = engine.with_items(ups), _rebuilt(engine, items, ups)
    for query in ["hiking boots", "black phone case", ups["title"][0], ups["title"][5]]:
        _, terms = delta.understand(query)
        a, _ = delta.lexical.combined(terms.lex_tokens, terms.lex_weights, terms.bigrams)
        b, _ = rebuilt.lexical.combined(terms.lex_tokens, terms.lex_weights, terms.bigrams)
        np.testing.assert_allclose(a, b, rtol=1e-6)  # the same formula; float32 rounding of its order only
        assert np.array_equal(delta.lexical.match_count(terms.tokens), rebuilt.lexical.match_count(terms.tokens))
        assert _ids(delta, query) == _ids(rebuilt, query)


def test_scores_equal_a_rebuild_up_to_ties(engine: SearchEngine, items: pl.DataFrame) -> None:
    """New and retitled items: the delta keeps the base's statistics (document count, average length, document
    frequencies) until the next full build, so scores differ from a rebuild's by that drift only (~1% on 1,500
    items with 10 changed) and the rankings agree."""
    changed = items.slice(0, 5).with_columns(pl.col("title") + " zorblax", pl.col("price") * 2)
    new = items.slice(10, 5).with_columns(("new-" + pl.col("item_id")).alias("item_id"),
                                          ("quuxter " + pl.col("title")).alias("title"))
    ups = pl.concat([changed, new])
    delta, rebuilt = engine.with_items(ups), _rebuilt(engine, items, ups)
    assert delta.catalog.item_ids == rebuilt.catalog.item_ids
    queries = [" ".join(t.split()[:3]) for t in items["title"].sample(30, seed=3).to_list()]
    queries += ["quuxter", "zorblax", "zorblax boots", new["title"][2], changed["title"][1]]
    for query in queries:
        _, terms = delta.understand(query)
        a, _ = delta.lexical.combined(terms.lex_tokens, terms.lex_weights, terms.bigrams)
        b, _ = rebuilt.lexical.combined(terms.lex_tokens, terms.lex_weights, terms.bigrams)
        assert np.array_equal(a > 0, b > 0), query  # the same items match
        np.testing.assert_allclose(a, b, rtol=0.02, atol=1e-4, err_msg=query)
        got, want = delta.search(query, page_size=10), rebuilt.search(query, page_size=10)
        assert got.total == want.total, query
        assert [h.item_id for h in got.hits] == [h.item_id for h in want.hits], query


def test_words_of_new_items_are_spelled(engine: SearchEngine, items: pl.DataFrame) -> None:
    new = items.slice(3, 1).with_columns(pl.lit("new-2").alias("item_id"), pl.lit("Brambleton kettle").alias("title"))
    delta = engine.with_items(new)
    assert "brambleton" in delta.spell and "brambleton" not in engine.spell
    assert delta.search("bramblton kettle").hits[0].item_id == "new-2"


def test_codes_with_rows_equal_a_build() -> None:
    rows = [["a"], [], ["b", "c"], ["a", "d"]]
    codes = Codes.build(rows)
    for changed, values in [([1], [["e"]]), ([0, 2], [["c"], ["a"]]), ([2, 4, 5], [[], ["f", "a"], []]),
                            ([3, 4], [["b"], ["g"]])]:
        after = [list(r) for r in rows] + [[] for _ in range(max(changed) + 1 - len(rows))]
        for row, vals in zip(changed, values, strict=True):
            after[row] = vals
        got = codes.with_rows(changed, values, len(after))
        assert got.rows_values(np.arange(len(after))) == after
        assert got.mask(["a"], len(after)).tolist() == [("a" in r) for r in after]


def test_dense_delta_searches_as_a_full_index() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    rows = np.array([5, 40, 300, 301])
    vectors = rng.normal(size=(4, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    full = np.concatenate([base, np.zeros((2, 16), np.float32)])
    full[rows] = vectors
    delta, exact = DenseIndex(base).with_rows(rows, vectors), DenseIndex(full)
    mask = rng.random(302) < 0.5
    for q in rng.normal(size=(10, 16)).astype(np.float32):
        q /= np.linalg.norm(q)
        for m in (None, mask):
            got, want = delta.search(q, 20, m), exact.search(q, 20, m)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
        np.testing.assert_allclose(delta.similarity(q, np.arange(302)), full @ q, rtol=1e-5, atol=1e-6)
    assert len(delta) == 302


def test_a_delta_is_saved_and_loaded_as_it_was(engine: SearchEngine, items: pl.DataFrame, tmp_path) -> None:
    """A refresh saves the items it folded as the index's delta (no rebuild): loaded back, the index answers
    exactly as the one in memory did, and takes further upserts on top."""
    ups = pl.concat([items.slice(40, 3).with_columns(pl.col("title") + " quuxter"),
                     items.slice(50, 2).with_columns(pl.Series("item_id", ["new-a", "new-b"]),
                                                     pl.lit("Plimbo quuxter lamp").alias("title"))])
    delta = engine.with_items(ups).with_items(items.slice(60, 1).with_columns(pl.lit("Zorblax").alias("title")))
    delta.save(tmp_path / "search")
    loaded = SearchEngine.load(tmp_path / "search")
    for query in ("quuxter", "plimbo lamp", "zorblax", items["title"][40], items["title"][60], "boots"):
        a, b = delta.search(query, page_size=50), loaded.search(query, page_size=50)
        assert [(h.item_id, h.score) for h in a.hits] == [(h.item_id, h.score) for h in b.hits], query
        assert a.total == b.total
    assert _ids(loaded, "plimbo") == ["new-a", "new-b"] and _ids(loaded, "zorblax") == [items["item_id"][60]]
    again = loaded.with_items(items.slice(50, 1).with_columns(pl.lit("new-a").alias("item_id"),
                                                              pl.lit("Wibble lamp").alias("title")))
    assert _ids(again, "plimbo") == ["new-b"] and _ids(again, "wibble") == ["new-a"]
