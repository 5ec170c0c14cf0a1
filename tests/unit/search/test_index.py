"""Index building blocks without the language model: embedding cache, dense (flat/HNSW, filters), BM25 fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aisle.search.dense import DenseIndex
from aisle.search.embed import EmbeddingCache, text_key
from aisle.search.lexical import FieldIndex, LexicalIndex


def test_embedding_cache_embeds_only_missing_texts_and_persists(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([[len(t)] * 384 for t in texts], dtype=np.float32)

    cache = EmbeddingCache(tmp_path)
    first = cache.get_many(["a", "bb", "a"], fake)
    assert calls == [["a", "bb"]] and first[:, 0].tolist() == [1, 2, 1]
    again = EmbeddingCache(tmp_path).get_many(["bb", "ccc"], fake)
    assert calls[-1] == ["ccc"] and again[:, 0].tolist() == [2, 3]
    assert text_key("a") != text_key("a", "other-model")  # the model name is part of the key
    assert len(EmbeddingCache(tmp_path, "other-model")) == 0


def _unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_dense_flat_and_hnsw_agree_and_filters_hold(tmp_path: Path) -> None:
    v = _unit(3000)
    flat, hnsw = DenseIndex(v), DenseIndex(v, hnsw_threshold=1000)
    assert (flat.kind, hnsw.kind) == ("flat", "hnsw")
    q = v[7]
    rows_f, _ = flat.search(q, 10)
    rows_h, sims_h = hnsw.search(q, 10)
    assert rows_f[0] == rows_h[0] == 7 and len(set(rows_f) & set(rows_h)) >= 8
    mask = np.zeros(3000, dtype=bool)
    mask[::2] = True  # large subset: faiss with an id selector
    rows, _ = hnsw.search(q, 20, mask)
    assert len(rows) == 20 and mask[rows].all()
    small = np.zeros(3000, dtype=bool)
    small[[5, 9, 11]] = True  # small subset: scored directly
    rows, sims = flat.search(q, 10, small)
    assert sorted(rows.tolist()) == [5, 9, 11] and np.all(np.diff(sims) <= 0)
    hnsw.save(tmp_path / "d")
    back = DenseIndex.load(tmp_path / "d")
    assert back.kind == "hnsw" and back.search(q, 10)[0].tolist() == rows_h.tolist()
    assert np.allclose(sims_h, back.search(q, 10)[1])


def test_field_bm25_scores_matches_and_round_trip(tmp_path: Path) -> None:
    docs = [["shower", "faucet"], ["shower", "head"], ["toilet", "seat"], []]
    f = FieldIndex.build(docs)
    s = f.scores(["shower", "faucet", "unknown"])
    assert s[0] > s[1] > 0 and s[2] == s[3] == 0
    assert f.matches(["shower", "faucet"]).tolist() == [2, 1, 0, 0]
    w = f.scores(["shower", "faucet"], [1.0, 0.0])
    assert np.isclose(w[0], w[1])
    f.save(tmp_path / "f")
    assert np.allclose(FieldIndex.load(tmp_path / "f").scores(["shower"]), f.scores(["shower"]))


def test_scores_and_matches_at_a_few_rows_equal_the_full_pass() -> None:
    """The reranker's features look up only the candidate rows; they must be the full pass's values exactly."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30)]
    docs = [list(rng.choice(vocab, int(rng.integers(0, 8)))) for _ in range(400)]
    f = FieldIndex.build(docs)
    rows = np.sort(rng.choice(400, 60, replace=False)).astype(np.int64)[::-1].copy()  # any order
    for toks in (["w1", "w2", "w2", "nope"], ["w7"], [], ["", "w3"]):
        assert np.array_equal(f.scores_at(toks, rows), f.scores(toks)[rows])
        assert np.array_equal(f.matches_at(toks, rows), f.matches(toks)[rows])
        assert np.array_equal(f.matches_at(toks, rows, idf=True), f.matches(toks, idf=True)[rows])
    assert f.scores_at(["w1"], np.zeros(0, np.int64)).shape == (0,)


def test_lexical_index_fields_and_match_count() -> None:
    lex = LexicalIndex.build({"title": ["Delta shower faucet", "Kohler toilet"], "brand": ["Delta", "Kohler"],
                              "category": ["Bath", ""], "attributes": ["", ""], "description": ["", ""]})
    assert set(lex.fields) == {"title", "brand", "category", "title_bigram", "title_chargram", "title_head",
                               "title_window"}
    total, per = lex.combined(["delta", "faucet"], bigram_tokens=["delta_shower"])
    assert total[0] > 0 == total[1] and per["brand"][0] > 0
    assert lex.match_count(["delta", "bath", "kohler"]).tolist() == [2, 1]


def test_value_filter_mask_equals_a_scan_of_every_item() -> None:
    """Filter masks come from value -> items postings; they must select exactly the items a plain scan does."""
    from aisle.search.catalog import Codes

    rng = np.random.default_rng(0)
    values = ["Red", "blue", "Green", "Crème", "black", "white"]
    rows = [[values[j] for j in rng.choice(len(values), rng.integers(0, 4), replace=False)] for _ in range(500)]
    rows[7] = ["Red", "Red"]  # a repeated value counts once
    codes = Codes.build(rows)
    for wanted in (["red"], ["BLUE", "creme"], ["green", "black", "white"], ["purple"], []):
        folded = {w.lower().replace("è", "e") for w in wanted}
        want = np.array([any(v.lower().replace("è", "e") in folded for v in r) for r in rows])
        got = codes.mask(wanted, len(rows))
        assert got.dtype == bool and np.array_equal(got, want), wanted
    assert Codes.build([[], []]).mask(["red"], 2).tolist() == [False, False]
