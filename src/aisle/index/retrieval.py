"""A vector model's queries answered from an `ItemIndex`, and recall of an index against exact search.

`Retriever` is what serving puts in place of a full-catalog `score` pass: it encodes the query, asks the index
for the top items, and drops the query's own history. `choose_index` is the serving rule: exact scoring up to
`min_items` items, the configured ANN kind above (an exact pass over a million items costs tens of
milliseconds per query; HNSW answers in about one). `Retriever` is also a Recommender (`score`), so the
evaluation harness scores it like any model: items beyond the retrieved `depth` get -inf, so metrics at
cut-offs up to `depth` are what the retriever really serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from aisle.index.ann import IndexSpec, ItemIndex, Progress
from aisle.index.vectors import VectorModel
from aisle.models.base import QueryBatch


class Retriever:
    name: ClassVar[str] = "retriever"

    def __init__(self, model: VectorModel, index: ItemIndex, *, depth: int = 100, exclude_history: bool = True,
                 threads: int | None = None) -> None:
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self.model, self.index, self.depth = model, index, depth
        self.exclude_history, self.threads = exclude_history, threads
        self.n_items = len(index)

    def top_n(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(len(batch), n) item indices (int32, -1 pads) and scores (float32, 0 for pads), best first."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        q = np.asarray(self.model.user_vectors(batch), np.float32)
        hists = [set(np.asarray(h, np.int64).tolist()) for h in batch.histories] if self.exclude_history \
            else [set()] * len(batch)
        extra = max((len(h) for h in hists), default=0)
        idx, sc = self.index.search(q, min(n + extra, self.n_items), threads=self.threads)
        out_i = np.full((len(batch), n), -1, np.int32)
        out_s = np.zeros((len(batch), n), np.float32)
        for r, h in enumerate(hists):  # a set and a short scan: a single request's history is a few items
            got = [j for j, i in enumerate(idx[r].tolist()) if i >= 0 and i not in h][:n]
            out_i[r, : len(got)] = idx[r][got]
            out_s[r, : len(got)] = sc[r][got]
        return out_i, out_s

    def score(self, batch: QueryBatch) -> np.ndarray:
        """(len(batch), n_items): the retrieved top `depth` items keep their scores, every other item -inf."""
        out = np.full((len(batch), self.n_items), -np.inf, np.float32)
        for a in range(0, len(batch), 1024):
            sub = QueryBatch(batch.user_idx[a:a + 1024], batch.histories[a:a + 1024])
            idx, sc = self.top_n(sub, self.depth)
            rows = np.repeat(np.arange(len(idx)), idx.shape[1])
            ok = idx.ravel() >= 0
            out[a + rows[ok], idx.ravel()[ok]] = sc.ravel()[ok]
        return out


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean |approx top-k ∩ exact top-k| / k over queries (-1 entries never count)."""
    a, e = np.asarray(approx)[:, :k], np.asarray(exact)[:, :k]
    if a.shape[0] != e.shape[0]:
        raise ValueError("approx and exact differ in the number of queries")
    hits = [len(np.intersect1d(x[x >= 0], y[y >= 0])) for x, y in zip(a, e, strict=True)]
    return float(np.mean(hits) / k) if hits else 0.0


def choose_index(n_items: int, *, min_items: int, exact: IndexSpec, ann: IndexSpec) -> IndexSpec:
    """The serving rule: `ann` for catalogs of at least `min_items` items, else `exact`."""
    return ann if n_items >= min_items else exact


def build_retriever(model: VectorModel, *, min_items: int, exact: IndexSpec | None = None,
                    ann: IndexSpec | None = None, depth: int = 100, progress: Progress | None = None,
                    threads: int | None = None) -> Retriever:
    """A Retriever over `model.item_vectors()` with the index `choose_index` picks for its size."""
    items = np.asarray(model.item_vectors(), np.float32)
    spec = choose_index(len(items), min_items=min_items, exact=exact or IndexSpec(kind="exact"),
                        ann=ann or IndexSpec())
    return Retriever(model, ItemIndex.build(items, spec, progress=progress, threads=threads), depth=depth)


def exact_top_k(items: np.ndarray, queries: np.ndarray, k: int, *, chunk: int = 256,
                exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Reference top-k item indices by brute force (ties by lower index), chunked to bound memory."""
    items = np.asarray(items, np.float32)
    out = np.empty((len(queries), k), np.int64)
    for a in range(0, len(queries), chunk):
        s = np.asarray(queries[a:a + chunk], np.float32) @ items.T
        if exclude is not None:
            for r, h in enumerate(exclude[a:a + chunk]):
                s[r, np.asarray(h, np.int64)] = -np.inf
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(s, part, axis=1)
        order = np.lexsort((part, -top), axis=1)
        out[a:a + len(s)] = np.take_along_axis(part, order, axis=1)
    return out


__all__ = ["Retriever", "build_retriever", "choose_index", "exact_top_k", "recall_at_k"]
