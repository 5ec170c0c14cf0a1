"""First-order Markov chain over consecutive items: "after this, shoppers went on to that".

Why: next-item transitions are the simplest sequential signal (the core of FPMC and of session models),
cheap to count, and the right answer for "what next" widgets. Design choices:

- Counts T[i, j] of item j directly following item i in a user's time-ordered events (repeats included).
- Additive smoothing towards popularity: P(j | i) = (T[i, j] + β·p(j)) / (T[i, ·] + β), p = item frequency.
  An item with few observed successors then falls back to popularity instead of ranking the whole catalog
  at zero, and every score is finite.
- A query is scored from its last `window` items, the item at distance d from the end weighted `decay ** d`
  and the mixture normalised, so a one-item session and a long history live on the same scale. An empty
  history gets p (popularity). Everything is one sparse product per batch.
- `hops` shapes only `similar`, the neighbour table that item pages and the pipeline's item-to-item source read:
  with hops = h an item's neighbours are ranked by the chance of reaching them within h steps (P + P^2 + ...,
  observed transitions only). One step leaves most items with a handful of observed successors, so the source
  runs dry long before its 50 neighbours; the second step reaches the items shoppers go on to one visit later,
  which is where the pipeline's candidate pool was missing targets (benchmarks/RESULTS.md, issue 24).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.models.common import history_matrix, load_array, load_sparse, save_sparse, sparse_rows_topk


def transition_counts(data: TrainData) -> sp.csr_matrix:
    """items x items counts of j immediately following i within one user's sequence (positive-weight events)."""
    ev = data.events.filter(pl.col("weight") > 0)
    users = ev["user_idx"].to_numpy()
    items = ev["item_idx"].to_numpy().astype(np.int64)
    same = users[1:] == users[:-1]  # events are sorted by user, then time
    src, dst = items[:-1][same], items[1:][same]
    t = sp.csr_matrix((np.ones(len(src), np.float32), (src, dst)), shape=(data.n_items, data.n_items))
    t.sum_duplicates()
    return t


class MarkovChain:
    """Smoothed first-order transitions. Defaults: best on Beauty validation (NDCG@10 0.0623)."""

    name: ClassVar[str] = "markov"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "smoothing": [30.0, 1.0],
        "window": [5, 3, 1],
        "decay": [0.5, 0.3],
    }

    def __init__(self, smoothing: float = 30.0, window: int = 5, decay: float = 0.5, hops: int = 1) -> None:
        if smoothing <= 0:
            raise ValueError("smoothing must be positive (it is what keeps every score finite)")
        if hops < 1:
            raise ValueError(f"hops must be at least 1, got {hops}")
        self.smoothing, self.window, self.decay, self.hops = smoothing, window, decay, hops
        self.transitions: sp.csr_matrix | None = None
        self.prior: np.ndarray | None = None
        self._p: sp.csr_matrix | None = None
        self._reach: sp.csr_matrix | None = None  # P + P^2 + ... + P^hops: what `similar` ranks by
        self._rest: np.ndarray | None = None
        self.observed = 0.0  # positive events behind the prior

    def fit(self, data: TrainData) -> Self:
        ev = data.events.filter(pl.col("weight") > 0)
        counts = np.bincount(ev["item_idx"].to_numpy(), minlength=data.n_items).astype(np.float64)
        prior = counts / counts.sum() if counts.sum() else np.full(data.n_items, 1.0 / max(data.n_items, 1))
        self.observed = float(counts.sum())  # the prior's scale, so new events can be added to it
        self._set(transition_counts(data), prior)
        return self

    def add_events(self, events: pl.DataFrame) -> np.ndarray | None:
        """Fold new events into the counts, as if they had been in the fit; the items whose successors changed
        (None: no new positive event, nothing counted).

        `events` has TrainData's encoded columns, sorted by user then time. A user's transition from their last
        event before these into the first new one counts only when that earlier event is passed too, as the
        user's first row with `is_new` false (rows without an `is_new` column are all new); item counts (the
        prior) come from the new rows only."""
        if self.transitions is None or self.prior is None:
            raise RuntimeError(f"{self.name} is not fitted")
        events = events.filter(pl.col("weight") > 0)
        new = events["is_new"].to_numpy().astype(bool) if "is_new" in events.columns else np.ones(events.height, bool)
        if not new.any():
            return None
        users = events["user_idx"].to_numpy()
        items = events["item_idx"].to_numpy().astype(np.int64)
        pairs = (users[1:] == users[:-1]) & new[1:]
        n = self.transitions.shape[0]
        added = sp.csr_matrix((np.ones(int(pairs.sum()), np.float32), (items[:-1][pairs], items[1:][pairs])),
                              shape=(n, n))
        counts = self.prior * self.observed + np.bincount(items[new], minlength=n)[:n]
        self.observed = float(counts.sum())
        self._set(self.transitions + added, counts / max(self.observed, 1e-12))
        changed = np.unique(items[:-1][pairs])
        for _ in range(self.hops - 1):  # an item that reaches a changed one in one step reaches new places too
            changed = np.union1d(changed, self.transitions[:, changed].nonzero()[0])
        return changed

    def _set(self, transitions: sp.csr_matrix, prior: np.ndarray) -> None:
        self.transitions, self.prior = transitions.tocsr(), np.asarray(prior, dtype=np.float64)
        out = np.asarray(self.transitions.sum(axis=1)).ravel().astype(np.float64)
        denom = out + self.smoothing
        self._p = (sp.diags(1.0 / denom) @ self.transitions).tocsr().astype(np.float32)  # observed part of P(j|i)
        self._rest = (self.smoothing / denom).astype(np.float32)  # mass each row gives to the prior
        reach, step = self._p, self._p
        for _ in range(self.hops - 1):
            step = (step @ self._p).tocsr()
            reach = reach + step
        self._reach = reach.tocsr()

    def next_item_probabilities(self, items: np.ndarray) -> np.ndarray:
        """Dense P(j | i) for each item i of `items` (rows sum to 1)."""
        return self.score(QueryBatch.of_histories([[int(i)] for i in items]))

    def score(self, batch: QueryBatch) -> np.ndarray:
        if self._p is None or self._rest is None or self.prior is None:
            raise RuntimeError(f"{self.name} is not fitted")
        h = history_matrix(batch, self._p.shape[0], decay=self.decay, last=self.window, binary=False)
        total = np.asarray(h.sum(axis=1)).ravel()
        h = (sp.diags(1.0 / np.maximum(total, 1e-12)) @ h).tocsr()  # a mixture over the last items
        rest = np.where(total > 0, h @ self._rest, 1.0)  # an empty history is all prior
        scores = (h @ self._p).toarray() + rest[:, None] * self.prior[None, :]
        return scores.astype(np.float32)

    def similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Observed successors within `hops` steps, the likeliest first (by P(j | i), plus P^2 ... with hops)."""
        if self._reach is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return sparse_rows_topk(self._reach, np.asarray(items), k)

    def save(self, path: Path) -> None:
        if self.transitions is None or self.prior is None:
            raise RuntimeError(f"{self.name} is not fitted")
        write_config(path, self.name, {"smoothing": self.smoothing, "window": self.window, "decay": self.decay,
                                       "hops": self.hops})
        save_sparse(path / "transitions.npz", self.transitions)
        np.save(path / "prior.npy", self.prior)
        np.save(path / "observed.npy", np.array([self.observed]))

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls(**read_config(path, cls.name))
        model._set(load_sparse(path / "transitions.npz"), load_array(path / "prior.npy"))
        if (path / "observed.npy").exists():
            model.observed = float(load_array(path / "observed.npy")[0])
        return model
