"""Array plumbing shared by the classic recommenders: histories as sparse matrices, sparse top-k, persistence.

Why one place: every classic model scores a batch the same way — turn the batch's histories into a sparse
(batch x items) matrix, multiply by something the model learned — so the recency weighting, the vectorised
per-row top-k used to keep neighbour lists sparse, and the .npy/.npz persistence are written (and tested) once.
Nothing here loops over users or items in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from aisle.models.base import QueryBatch


def history_matrix(
    histories: Sequence[np.ndarray] | QueryBatch,
    n_items: int,
    *,
    decay: float = 1.0,
    last: int | None = None,
    binary: bool = True,
) -> sp.csr_matrix:
    """(len(histories), n_items) CSR of recency-weighted histories.

    The item at distance d from the end of its history (d = 0 for the latest) weighs `decay ** d`; a repeated item
    keeps its largest weight when `binary`, else the weights add up. `last` keeps only the last `last` items.
    Item indices outside [0, n_items) are dropped (a history may name items the model never saw).
    """
    hist = histories.histories if isinstance(histories, QueryBatch) else histories
    n = len(hist)
    if last is not None:
        hist = [np.asarray(h)[-last:] if last > 0 else np.asarray(h)[:0] for h in hist]
    lengths = np.fromiter((len(h) for h in hist), dtype=np.int64, count=n)
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in hist]) if lengths.sum() else np.empty(0, np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    ends = np.repeat(np.cumsum(lengths), lengths)
    dist = ends - np.arange(len(cols)) - 1  # 0 for the last item of each history
    data = np.power(np.float64(decay), dist).astype(np.float32) if decay != 1.0 else np.ones(len(cols), np.float32)
    ok = (cols >= 0) & (cols < n_items)
    rows, cols, data = rows[ok], cols[ok], data[ok]
    if binary and len(cols):
        # keep the largest weight per (row, item): sort by key then weight, take the last of each key
        key = rows * n_items + cols
        order = np.lexsort((data, key))
        key, data = key[order], data[order]
        keep = np.r_[key[1:] != key[:-1], True]
        key, data = key[keep], data[keep]
        rows, cols = key // n_items, key % n_items
    m = sp.csr_matrix((data, (rows, cols)), shape=(n, n_items), dtype=np.float32)
    m.sum_duplicates()
    return m


def topk_per_row(m: sp.spmatrix, k: int, *, drop_diagonal: bool = False) -> sp.csr_matrix:
    """Keep the k largest stored values of each row of a sparse matrix (ties: lower column first), vectorised."""
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    m.sum_duplicates()
    if drop_diagonal:
        m.setdiag(0)
    m.eliminate_zeros()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))  # by row, then value descending, then column
    rank = np.arange(len(order)) - m.indptr[rows[order]]
    keep = order[rank < k]
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape, dtype=np.float32)
    out.sort_indices()
    return out


def topk_dense(scores: np.ndarray, k: int, *, exclude_self: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row of a dense matrix: (indices, scores) best first, padded with (-1, -inf); ties by index.

    `exclude_self[i]` is a column that row i may not return (e.g. the query item of a "similar items" call).
    Rows' -inf entries are never returned.
    """
    s = np.array(scores, dtype=np.float32, copy=True)
    if exclude_self is not None:
        ok = (exclude_self >= 0) & (exclude_self < s.shape[1])
        s[np.flatnonzero(ok), exclude_self[ok]] = -np.inf
    n_rows, n_cols = s.shape
    kk = min(k, n_cols)
    if kk == 0:
        return np.full((n_rows, k), -1, np.int64), np.full((n_rows, k), -np.inf, np.float32)
    order = np.argsort(-s, axis=1, kind="stable")[:, :kk]
    val = np.take_along_axis(s, order, axis=1)
    idx = np.where(np.isneginf(val), -1, order)
    if kk < k:
        idx = np.hstack([idx, np.full((n_rows, k - kk), -1, np.int64)])
        val = np.hstack([val, np.full((n_rows, k - kk), -np.inf, np.float32)])
    return idx.astype(np.int64), val.astype(np.float32)


def sparse_rows_topk(m: sp.csr_matrix, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k stored entries of the given rows of a square sparse matrix, as padded (indices, scores) arrays.

    The "similar items" answer of sparse item-item models: the row's own item (the diagonal) is never returned,
    and an out-of-range row gets only padding (-1, -inf).
    """
    rows = np.asarray(rows, dtype=np.int64)
    ok = (rows >= 0) & (rows < m.shape[0])
    sub = m[np.where(ok, rows, 0)].tocoo()
    keep = ok[sub.row] & (sub.col != rows[sub.row]) & (sub.data != 0)
    sub = topk_per_row(sp.csr_matrix((sub.data[keep], (sub.row[keep], sub.col[keep])), shape=sub.shape), k)
    idx = np.full((len(rows), k), -1, np.int64)
    val = np.full((len(rows), k), -np.inf, np.float32)
    r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    order = np.lexsort((sub.indices, -sub.data, r))  # within each row, the largest first
    pos = np.arange(sub.nnz) - sub.indptr[r]
    idx[r, pos] = sub.indices[order]
    val[r, pos] = sub.data[order]
    return idx, val


def stable_rank_scores(values: np.ndarray) -> np.ndarray:
    """Distinct float32 scores that order items like `values` (descending), equal values by lower index first.

    Popularity-style models score every query alike; making ties explicit keeps their top-k deterministic.
    """
    order = np.lexsort((np.arange(len(values)), -np.asarray(values, dtype=np.float64)))
    out = np.empty(len(values), np.float32)
    out[order] = np.arange(len(values), 0, -1, dtype=np.float32)
    return out


def save_sparse(path: Path, m: sp.spmatrix) -> None:
    sp.save_npz(path, sp.csr_matrix(m), compressed=True)


def load_sparse(path: Path) -> sp.csr_matrix:
    return sp.load_npz(path).tocsr()  # scipy's npz holds plain arrays; it never unpickles


def load_array(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)
