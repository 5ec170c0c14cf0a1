from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from aisle.models.common import history_matrix, sparse_rows_topk, stable_rank_scores, topk_dense, topk_per_row


def test_history_matrix_decay_last_and_binary() -> None:
    m = history_matrix([np.array([0, 1, 2]), np.array([3, 3]), np.array([], np.int64), np.array([9, 1])], 4,
                       decay=0.5)
    assert m.shape == (4, 4)
    np.testing.assert_allclose(m.toarray()[0], [0.25, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(m.toarray()[1], [0, 0, 0, 1.0])  # a repeat keeps its largest weight
    assert m[2].nnz == 0
    np.testing.assert_allclose(m.toarray()[3], [0, 1.0, 0, 0])  # out-of-range item 9 dropped
    summed = history_matrix([np.array([3, 3])], 4, decay=0.5, binary=False)
    np.testing.assert_allclose(summed.toarray()[0], [0, 0, 0, 1.5])
    last = history_matrix([np.array([0, 1, 2])], 4, last=2)
    np.testing.assert_allclose(last.toarray()[0], [0, 1, 1, 0])


def test_topk_per_row_keeps_largest_and_breaks_ties_by_column() -> None:
    m = sp.csr_matrix(np.array([[0, 3, 1, 3], [5, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    out = topk_per_row(m, 2).toarray()
    np.testing.assert_array_equal(out, [[0, 3, 0, 3], [5, 0, 0, 0], [0, 0, 0, 0]])
    diag = topk_per_row(sp.csr_matrix(np.ones((3, 3), np.float32)), 5, drop_diagonal=True).toarray()
    assert np.all(np.diag(diag) == 0) and diag.sum() == 6


def test_sparse_rows_topk_skips_self_and_pads() -> None:
    m = sp.csr_matrix(np.array([[9, 2, 3], [1, 0, 0], [0, 0, 0]], np.float32))
    idx, val = sparse_rows_topk(m, np.array([0, 1, 2, -1, 7]), 2)
    np.testing.assert_array_equal(idx, [[2, 1], [0, -1], [-1, -1], [-1, -1], [-1, -1]])
    np.testing.assert_array_equal(val[0], [3, 2])
    assert np.isneginf(val[1, 1]) and np.all(np.isneginf(val[2:]))


def test_topk_dense_and_stable_rank_scores() -> None:
    idx, val = topk_dense(np.array([[1, 5, 5, -np.inf]], np.float32), 4, exclude_self=np.array([2]))
    np.testing.assert_array_equal(idx, [[1, 0, -1, -1]])
    assert val.dtype == np.float32
    scores = stable_rank_scores(np.array([2.0, 7.0, 2.0, 0.0]))
    assert list(np.argsort(-scores, kind="stable")) == [1, 0, 2, 3]
    assert len(set(scores.tolist())) == 4
