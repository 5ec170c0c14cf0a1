"""ANN indexes against exact search on small planted vectors: recall, scores, persistence, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.index import IndexSpec, ItemIndex, default_nlist, exact_top_k, recall_at_k


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    """2,000 items in 40 clusters with different norms (so inner product is not cosine), 100 queries."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 16)).astype(np.float32)
    items = centres[rng.integers(0, 40, 2000)] + 0.4 * rng.standard_normal((2000, 16)).astype(np.float32)
    items *= rng.uniform(0.5, 2.0, (2000, 1)).astype(np.float32)
    queries = centres[rng.integers(0, 40, 100)] + 0.3 * rng.standard_normal((100, 16)).astype(np.float32)
    return items, queries


def test_exact_kind_is_brute_force(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = vectors
    idx, sc = ItemIndex.build(items, IndexSpec(kind="exact")).search(queries, 10)
    truth = exact_top_k(items, queries, 10)
    assert recall_at_k(idx, truth, 10) == 1.0
    np.testing.assert_allclose(sc, np.take_along_axis(queries @ items.T, idx, axis=1), rtol=1e-5, atol=1e-5)
    assert (np.diff(sc, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize(("spec", "floor"), [
    (IndexSpec(kind="hnsw", m=16, ef_search=64), 0.95),
    (IndexSpec(kind="hnsw", m=16, ef_search=64, l2=False), 0.8),
    (IndexSpec(kind="hnsw-sq8", m=16, ef_search=64, refine=4), 0.95),
    (IndexSpec(kind="ivf", nlist=16, nprobe=4), 0.9),
    (IndexSpec(kind="ivf-sq8", nlist=16, nprobe=4, refine=4), 0.9),
    (IndexSpec(kind="ivf-pq", nlist=16, nprobe=4, pq_m=4, refine=8), 0.9),
    (IndexSpec(kind="exact-int8"), 0.9),
    (IndexSpec(kind="exact-fp16"), 0.99),
])
def test_approximate_kinds_recall_exact_top_10(vectors: tuple[np.ndarray, np.ndarray], spec: IndexSpec,
                                               floor: float) -> None:
    items, queries = vectors
    index = ItemIndex.build(items, spec)
    idx, sc = index.search(queries, 10)
    assert recall_at_k(idx, exact_top_k(items, queries, 10), 10) >= floor
    # the scores are inner products whatever space was searched (the L2 reduction is undone)
    true = np.take_along_axis(queries @ items.T, idx, axis=1)
    np.testing.assert_allclose(sc, true, rtol=0.05, atol=0.05 if "8" in spec.kind or "pq" in spec.kind else 1e-3)


def test_ivf_scanning_every_list_is_exact(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = vectors
    index = ItemIndex.build(items, IndexSpec(kind="ivf", nlist=16, nprobe=1))
    few = recall_at_k(index.search(queries, 10)[0], exact_top_k(items, queries, 10), 10)
    every = index.with_search(nprobe=16)
    assert recall_at_k(every.search(queries, 10)[0], exact_top_k(items, queries, 10), 10) == 1.0
    assert few < 1.0  # one list of 16 misses some: the parameter is really used
    # views share the faiss index: each searches with its own nprobe, whichever was made or used last
    truth = exact_top_k(items, queries, 10)
    assert recall_at_k(index.search(queries, 10)[0], truth, 10) == few
    assert recall_at_k(every.search(queries, 10)[0], truth, 10) == 1.0


def test_save_load_answers_the_same(vectors: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    items, queries = vectors
    index = ItemIndex.build(items, IndexSpec(kind="ivf-pq", nlist=16, nprobe=8, pq_m=4, refine=4))
    index.save(tmp_path / "ix")
    loaded = ItemIndex.load(tmp_path / "ix")
    a, b = index.search(queries, 10), loaded.search(queries, 10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])
    assert loaded.spec == index.spec and loaded.file_bytes(tmp_path / "ix") > 0


def test_k_larger_than_the_catalog_pads(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = vectors
    idx, sc = ItemIndex.build(items[:5], IndexSpec(kind="hnsw")).search(queries[:2], 8)
    assert idx.shape == (2, 8) and (idx[:, 5:] == -1).all() and np.isneginf(sc[:, 5:]).all()
    assert sorted(idx[0, :5].tolist()) == [0, 1, 2, 3, 4]


def test_bad_input_is_a_clear_error(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, _ = vectors
    with pytest.raises(ValueError, match="unknown index kind"):
        IndexSpec(kind="annoy")
    with pytest.raises(ValueError, match="NaN"):
        ItemIndex.build(np.full((3, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        ItemIndex.build(np.zeros((0, 4), np.float32))
    index = ItemIndex.build(items, IndexSpec(kind="exact"))
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.zeros((1, 3), np.float32), 5)
    with pytest.raises(ValueError, match="k must be positive"):
        index.search(items[:1], 0)


def test_default_nlist_is_a_power_of_two_with_enough_training_points() -> None:
    assert default_nlist(1_000_000) == 4096
    assert default_nlist(2000) == 32  # 4 * sqrt(2000) = 179, but at most 2000 / 39 = 51 lists
    assert default_nlist(10) == 1
