"""Search memory: what shoppers did after similar searches, as a retriever and as reranker features.

Why: every managed search service a store compares Aisle with ranks with behaviour from its own search logs; text
relevance alone (BM25, an encoder, a reranker over their features) cannot know that shoppers who typed "1/2 in. pvc
elbow 90" bought one particular fitting. The memory keeps the store's logged queries (their dense vectors, made by
the encoder the engine serves with, from the same text the dense side embeds) and, per logged query, the products
shoppers engaged with and how strongly (gain: relevance - 1 on the 1-3 scale of `evaluate.judgments_from_events`
or of human judgments). A new query looks up its `NEIGHBOURS` nearest logged queries by cosine (brute force: a
matrix-vector product, well under a millisecond for tens of thousands of logged queries) among those at least
`MIN_SIMILARITY` alike, and every product they judged gets

* `mem_score`: the sum over those neighbours of sim^`POWER` x gain (near-duplicates count far more than loose
  relatives; the power keeps a crowd of loose neighbours from outvoting one exact variant),
* `mem_judged`: the sum of sim^`POWER` over the neighbours that judged it at all, whatever the gain (shown but not
  chosen is evidence too),
* `mem_best_sim` / `mem_best_gain`: the similarity of the closest neighbour that judged it and the gain it gave,

and the query itself `mem_top_sim`, its closest logged query's similarity: how much the reranker should trust the
rest. The products with the highest `mem_score` are also a retriever (`SearchConfig.k_memory` of them fused with
RRF), which is what finds products a similar query led to but the query's own words and vector miss.

Brute force is the right tool up to ~100,000 logged queries (a 100,000 x 384 product is a few milliseconds on one
core); a log with many more distinct searches would want the memory's vectors in the ANN index the catalog uses.

A query must never see its own log entries when the reranker learns how far to trust the memory: `without`
gives the memory less some logged queries (cross-fitting: a fitted query's features come from the memory of the
OTHER folds), and evaluation scores held-out queries against a memory of the fitted ones only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

NEIGHBOURS = 20
MIN_SIMILARITY = 0.5
POWER = 4.0
MIN_LOGGED_QUERIES = 50  # `aisle train` builds a memory from a store's log with at least this many searches
FEATURES: tuple[str, ...] = ("mem_score", "mem_judged", "mem_best_sim", "mem_best_gain", "mem_top_sim")


class Logged(Protocol):
    """One logged query with its products (catalog rows, -1 when not in the catalog) and their gains."""

    query: str
    rows: np.ndarray
    gains: np.ndarray


@dataclass(frozen=True)
class Recollection:
    """What the memory holds for one query: the products its neighbours judged, best `score` first."""

    rows: np.ndarray  # catalog rows
    score: np.ndarray
    judged: np.ndarray
    best_sim: np.ndarray
    best_gain: np.ndarray
    top_sim: float  # the closest logged query's similarity (0 when the memory is empty)

    def top(self, k: int) -> np.ndarray:
        """The first `k` products with a positive score: the memory's retrieval list."""
        return self.rows[:k][self.score[:k] > 0]

    def chosen_after(self, row: int) -> float | None:
        """The similarity of the closest logged query after which shoppers chose product `row` (a positive gain),
        None when no neighbour did: what a hit's explanation says."""
        at = np.flatnonzero((self.rows == row) & (self.score > 0))
        return round(float(self.best_sim[at[0]]), 4) if len(at) else None

    def features(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), len(FEATURES)) float32 in `FEATURES` order; a product no neighbour judged: 0, 0, 0, -1."""
        out = absent(rows)
        out[:, 4] = self.top_sim
        if len(self.rows) and len(rows):
            order = np.argsort(self.rows, kind="stable")
            srt = self.rows[order]
            at = np.minimum(np.searchsorted(srt, rows), len(srt) - 1)
            hit = srt[at] == rows
            src = order[at[hit]]
            out[hit, 0], out[hit, 1] = self.score[src], self.judged[src]
            out[hit, 2], out[hit, 3] = self.best_sim[src], self.best_gain[src]
        return out


def absent(rows: np.ndarray) -> np.ndarray:
    """The memory features of candidates when nothing is remembered (no memory, or no query vector)."""
    out = np.zeros((len(rows), len(FEATURES)), np.float32)
    out[:, 3] = -1.0
    return out


class SearchMemory:
    """Logged queries (unit vectors, one row each) and their judged products in CSR form (`indptr` into
    `rows` / `gains`)."""

    def __init__(self, queries: Sequence[str], vectors: np.ndarray, indptr: np.ndarray, rows: np.ndarray,
                 gains: np.ndarray) -> None:
        if len(queries) != len(vectors) or len(indptr) != len(queries) + 1:
            raise ValueError("search memory: queries, vectors and products do not line up")
        self.queries = list(queries)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.indptr = np.asarray(indptr, np.int64)
        self.rows = np.asarray(rows, np.int64)
        self.gains = np.asarray(gains, np.float32)

    def __len__(self) -> int:
        return len(self.queries)

    @classmethod
    def from_logged(cls, logged: Sequence[Logged], vectors: np.ndarray) -> SearchMemory:
        """A memory of `logged` queries (products outside the catalog dropped), `vectors[i]` being query i's."""
        indptr, rows, gains = [0], [], []
        for q in logged:
            keep = np.asarray(q.rows) >= 0
            rows.append(np.asarray(q.rows, np.int64)[keep])
            gains.append(np.asarray(q.gains, np.float32)[keep])
            indptr.append(indptr[-1] + int(keep.sum()))
        return cls([q.query for q in logged], vectors, np.asarray(indptr),
                   np.concatenate(rows) if rows else np.zeros(0, np.int64),
                   np.concatenate(gains) if gains else np.zeros(0, np.float32))

    def without(self, drop: np.ndarray) -> SearchMemory:
        """This memory less the logged queries where `drop` (a boolean mask over them) is set."""
        keep = np.flatnonzero(~np.asarray(drop, bool))
        starts, ends = self.indptr[keep], self.indptr[keep + 1]
        take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)]) if len(keep) \
            else np.zeros(0, np.int64)
        indptr = np.concatenate([[0], np.cumsum(ends - starts)])
        return SearchMemory([self.queries[i] for i in keep], self.vectors[keep], indptr, self.rows[take],
                            self.gains[take])

    def rebased(self, new_row: np.ndarray) -> SearchMemory:
        """This memory over another catalog: `new_row[r]` is old row r's row there (-1: gone, dropped)."""
        rows = np.asarray(new_row, np.int64)[self.rows] if len(self.rows) else self.rows
        keep = rows >= 0
        query_of = np.repeat(np.arange(len(self.queries)), np.diff(self.indptr))
        per = np.bincount(query_of[keep], minlength=len(self.queries))
        return SearchMemory(self.queries, self.vectors, np.concatenate([[0], np.cumsum(per)]), rows[keep],
                            self.gains[keep])

    def neighbours(self, qvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The logged queries closest to `qvec` (at most `NEIGHBOURS`, similarity >= `MIN_SIMILARITY`), closest
        first, with their similarities."""
        return _nearest(self.vectors @ np.asarray(qvec, np.float32) if len(self.queries) else np.zeros(0, np.float32))

    def recall(self, qvec: np.ndarray) -> Recollection:
        """Everything the memory says about a query with vector `qvec` (see the module docstring)."""
        sims = self.vectors @ np.asarray(qvec, np.float32) if len(self.queries) else np.zeros(0, np.float32)
        top_sim = float(sims.max()) if len(sims) else 0.0
        near, near_sim = _nearest(sims)
        if not len(near):
            empty = np.zeros(0, np.float32)
            return Recollection(np.zeros(0, np.int64), empty, empty, empty, empty, top_sim)
        counts = self.indptr[near + 1] - self.indptr[near]
        take = np.concatenate([np.arange(self.indptr[n], self.indptr[n + 1]) for n in near])
        rows, gains = self.rows[take], self.gains[take]
        sim = np.repeat(near_sim, counts).astype(np.float32)
        weight = sim ** POWER
        uniq, inv = np.unique(rows, return_inverse=True)
        score = np.bincount(inv, weight * gains, len(uniq)).astype(np.float32)
        judged = np.bincount(inv, weight, len(uniq)).astype(np.float32)
        # the closest neighbour that judged each product: entries come closest neighbour first, so its first entry
        first = np.full(len(uniq), len(rows), np.int64)
        np.minimum.at(first, inv, np.arange(len(rows)))
        o = np.lexsort((uniq, -score))
        return Recollection(uniq[o], score[o], judged[o], sim[first][o], gains[first][o].astype(np.float32),
                            top_sim)

    # ---- persistence: item ids, not rows, so a saved memory survives a rebuilt catalog ------------------

    def save(self, folder: Path, item_ids: Sequence[str]) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self.vectors)
        np.save(folder / "indptr.npy", self.indptr)
        np.save(folder / "gains.npy", self.gains)
        (folder / "memory.json").write_text(json.dumps({
            "queries": self.queries, "items": [str(item_ids[r]) for r in self.rows.tolist()]}))

    @classmethod
    def load(cls, folder: Path, item_rows: Callable[[list[str]], np.ndarray]) -> SearchMemory:
        """A saved memory over a catalog (`item_rows`: item ids -> catalog rows, -1 when gone); products no
        longer in the catalog are dropped."""
        folder = Path(folder)
        meta = json.loads((folder / "memory.json").read_text())
        rows = np.asarray(item_rows(meta["items"]), np.int64)
        saved = cls(meta["queries"], np.load(folder / "vectors.npy"), np.load(folder / "indptr.npy"),
                    np.arange(len(rows)), np.load(folder / "gains.npy"))
        return saved.rebased(rows)


def _nearest(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the `NEIGHBOURS` highest similarities that reach `MIN_SIMILARITY`, highest first (ties by index)."""
    k = min(NEIGHBOURS, len(sims))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    top = top[np.lexsort((top, -sims[top]))]
    top = top[sims[top] >= MIN_SIMILARITY]
    return top, sims[top]
