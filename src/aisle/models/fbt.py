"""Frequently bought together: association rules a → b over co-purchase baskets.

Why rules rather than a learned model: a merchandiser can read, filter and audit them ("support 0.2%,
confidence 31%, lift 12"), which is what "bought together" widgets and bundle offers need. Design choices:

- A basket is one user's buying events (`event_types`, default purchases and add-to-carts) with no gap
  longer than `window_hours` between consecutive ones: TrainData carries no session id, so time proximity
  stands in for "same session / same order". Items count once per basket. When the log has no events of
  those types (a view-only log), all positive-weight events are used instead, so the model still answers.
- For a → b: support = baskets with both / baskets, confidence = baskets with both / baskets with a,
  lift = confidence / (baskets with b / baskets). A rule is kept only if it clears `min_count` (baskets
  with both), `min_confidence` and `min_lift`; everything else scores as unrelated.
- `score` sums, over the history's items (latest weighted most, `history_decay`), the chosen rule strength
  (`metric`: confidence or lift) of a → candidate, plus a popularity tie-breaker far below any rule, so
  items with no rule to the history are still ordered (by popularity) and every score is finite.
- The model keeps the counts (baskets, baskets per item, baskets per pair, every pair seen) and derives the rules
  from them, so new events are folded in without a refit (`add_events`, the worker's refresh): the counts end
  exactly where a fit on all the events would, a basket that goes on across the refresh counting once, and the
  thresholds are applied again to every pair (a pair seen once before and once now becomes a rule at
  `min_count` 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.models.common import history_matrix, load_array, load_sparse, save_sparse, sparse_rows_topk

_TIE = 1e-6  # popularity tie-breaker scale: below the smallest confidence a rule can have in practice


def _basket_rows(events: pl.DataFrame, event_types: tuple[str, ...], window_hours: float,
                 all_positive: bool | None = None) -> tuple[pl.DataFrame, np.ndarray, bool]:
    """(the events baskets are made of, each one's basket number, whether every positive event counts).

    `all_positive` None: decide from the events (all positive ones when none is of `event_types`)."""
    ev = events.filter(pl.col("weight") > 0)
    chosen = ev.filter(pl.col("event_type").is_in(list(event_types)))
    use_all = not chosen.height if all_positive is None else all_positive
    ev = ev if use_all else chosen
    if ev.is_empty():
        return ev, np.zeros(0, np.int64), use_all
    users = ev["user_idx"].to_numpy()
    gap_h = ev["timestamp"].diff().dt.total_microseconds().fill_null(0).to_numpy().astype(np.float64) / 3.6e9
    new = np.r_[True, (users[1:] != users[:-1]) | (gap_h[1:] > window_hours)]
    return ev, np.cumsum(new) - 1, use_all


def _matrix(basket: np.ndarray, items: np.ndarray, n_baskets: int, n_items: int) -> sp.csr_matrix:
    """baskets x items, 1 where the item is in the basket (an item counts once per basket)."""
    m = sp.csr_matrix((np.ones(len(basket), np.float32), (basket, items)), shape=(n_baskets, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _co_counts(b: sp.csr_matrix) -> sp.csr_matrix:
    """Baskets holding both a and b, for every pair a != b."""
    co = (b.T @ b).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    return co


def baskets(data: TrainData, event_types: tuple[str, ...], window_hours: float) -> sp.csr_matrix:
    """baskets x items, 1 where the item is in the basket (see the module docstring for what a basket is)."""
    ev, basket, _ = _basket_rows(data.events, event_types, window_hours)
    n = int(basket[-1]) + 1 if len(basket) else 0
    return _matrix(basket, ev["item_idx"].to_numpy(), n, data.n_items)


class FrequentlyBoughtTogether:
    """Association rules over baskets. Defaults: best on Beauty validation (NDCG@10 0.0536)."""

    name: ClassVar[str] = "fbt"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "metric": ["confidence", "lift"],
        "min_count": [2, 1, 3],
        "history_decay": [0.5, 1.0],
    }

    def __init__(self, window_hours: float = 24.0, event_types: tuple[str, ...] | list[str] = ("purchase",
                 "add_to_cart"), min_count: int = 2, min_confidence: float = 0.0, min_lift: float = 1.0,
                 metric: str = "confidence", history_decay: float = 0.5) -> None:
        if metric not in ("confidence", "lift"):
            raise ValueError(f"metric must be 'confidence' or 'lift', not {metric!r}")
        self.window_hours, self.event_types = window_hours, tuple(event_types)
        self.min_count, self.min_confidence, self.min_lift = min_count, min_confidence, min_lift
        self.metric, self.history_decay = metric, history_decay
        self.pair_counts: sp.csr_matrix | None = None  # baskets holding both a and b, for every pair seen
        self.item_counts: np.ndarray | None = None  # baskets holding each item
        self.n_baskets = 0
        self.all_positive = False  # fitted on every positive event (the log had none of `event_types`)
        self.item_ids: np.ndarray | None = None
        self._strength: sp.csr_matrix | None = None
        self._tie: np.ndarray | None = None

    def _config(self) -> dict[str, Any]:
        return {"window_hours": self.window_hours, "event_types": list(self.event_types),
                "min_count": self.min_count, "min_confidence": self.min_confidence, "min_lift": self.min_lift,
                "metric": self.metric, "history_decay": self.history_decay}

    def fit(self, data: TrainData) -> Self:
        ev, basket, self.all_positive = _basket_rows(data.events, self.event_types, self.window_hours)
        n = int(basket[-1]) + 1 if len(basket) else 0
        b = _matrix(basket, ev["item_idx"].to_numpy(), n, data.n_items)
        item_counts = np.asarray(b.sum(axis=0)).ravel().astype(np.float64)
        self._set(_co_counts(b), item_counts, n, np.asarray(data.items.ids, dtype=str))
        return self

    def add_events(self, events: pl.DataFrame) -> np.ndarray | None:
        """Fold new events into the counts, as if they had been in the fit; the items whose rules changed (None:
        no new event was of a kind baskets count).

        `events` has TrainData's encoded columns, sorted by user then time, items of the fit only. Rows with
        `is_new` false are what came before (the shopper's stored events): they are not counted again, but a
        basket they begin and the new events continue counts once, with all its items, as a fit would count it
        (without the column every row is new)."""
        if self.pair_counts is None or self.item_counts is None or self._strength is None:
            raise RuntimeError(f"{self.name} is not fitted")
        n_items = self.pair_counts.shape[0]
        ev, basket, _ = _basket_rows(events.filter(pl.col("item_idx") < n_items), self.event_types,
                                     self.window_hours, self.all_positive)
        new = ev["is_new"].to_numpy().astype(bool) if "is_new" in ev.columns else np.ones(ev.height, bool)
        if not new.any():
            return None
        n = int(basket[-1]) + 1
        grows = np.zeros(n, bool)
        grows[basket[new]] = True  # baskets with something new: the only ones whose counts move
        had = np.zeros(n, bool)
        had[basket[~new]] = True  # ... of which these were counted before, without their new items
        items = ev["item_idx"].to_numpy()
        now = grows[basket]
        full = _matrix(basket[now], items[now], n, n_items)
        before = _matrix(basket[now & ~new], items[now & ~new], n, n_items)
        item_counts = self.item_counts + np.asarray(full.sum(axis=0) - before.sum(axis=0)).ravel()
        pair_counts = self.pair_counts + _co_counts(full) - _co_counts(before)
        pair_counts.eliminate_zeros()
        old = self._strength
        self._set(pair_counts, item_counts, self.n_baskets + int(grows.sum()) - int((grows & had).sum()),
                  self.item_ids if self.item_ids is not None else np.zeros(0, str))
        moved = abs(self._strength - old)
        moved.eliminate_zeros()
        return np.unique(moved.tocoo().row).astype(np.int64)

    def _rules(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(a, b, baskets with both, confidence, lift) of every pair that clears the thresholds."""
        assert self.pair_counts is not None and self.item_counts is not None
        coo = self.pair_counts.tocoo()
        both = coo.data.astype(np.float64)
        n = max(self.n_baskets, 1)
        conf = both / self.item_counts[coo.row]
        lift = conf * n / self.item_counts[coo.col]
        ok = (both >= self.min_count) & (conf >= self.min_confidence) & (lift >= self.min_lift)
        return coo.row[ok], coo.col[ok], both[ok], conf[ok], lift[ok]

    def _set(self, pair_counts: sp.csr_matrix, item_counts: np.ndarray, n_baskets: int, item_ids: np.ndarray) -> None:
        pair_counts = pair_counts.tocsr()
        pair_counts.sum_duplicates()  # canonical (sorted) rows: a fit and a refresh give the same rule order
        self.pair_counts, self.item_counts, self.n_baskets = pair_counts, item_counts, int(n_baskets)
        self.item_ids = item_ids
        rows, cols, _, conf, lift = self._rules()
        val = conf if self.metric == "confidence" else lift
        self._strength = sp.csr_matrix((val.astype(np.float32), (rows, cols)), shape=self.pair_counts.shape)
        top = self.item_counts.max() if len(self.item_counts) and self.item_counts.max() > 0 else 1.0
        self._tie = (_TIE * self.item_counts / top).astype(np.float32)

    def pairs(self) -> pl.DataFrame:
        """Every kept rule a → b with its statistics, strongest confidence first."""
        if self.pair_counts is None or self.item_counts is None or self.item_ids is None:
            raise RuntimeError(f"{self.name} is not fitted")
        rows, cols, both, conf, lift = self._rules()
        frame = pl.DataFrame({
            "item_a": self.item_ids[rows].tolist(),
            "item_b": self.item_ids[cols].tolist(),
            "a_idx": rows.astype(np.int32),
            "b_idx": cols.astype(np.int32),
            "count": both.astype(np.int64),
            "support": both / max(self.n_baskets, 1),
            "confidence": conf,
            "lift": lift,
        }, schema_overrides={"item_a": pl.String, "item_b": pl.String})
        return frame.sort(["confidence", "count", "a_idx", "b_idx"], descending=[True, True, False, False])

    def score(self, batch: QueryBatch) -> np.ndarray:
        if self._strength is None or self._tie is None:
            raise RuntimeError(f"{self.name} is not fitted")
        h = history_matrix(batch, self._strength.shape[0], decay=self.history_decay)
        return ((h @ self._strength).toarray() + self._tie[None, :]).astype(np.float32)

    def similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Bought together with each item, strongest rule (by `metric`) first."""
        if self._strength is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return sparse_rows_topk(self._strength, np.asarray(items), k)

    def save(self, path: Path) -> None:
        if self.pair_counts is None or self.item_counts is None or self.item_ids is None:
            raise RuntimeError(f"{self.name} is not fitted")
        write_config(path, self.name, {**self._config(), "n_baskets": self.n_baskets,
                                       "all_positive": self.all_positive})
        save_sparse(path / "pair_counts.npz", self.pair_counts)
        np.save(path / "item_counts.npy", self.item_counts)
        np.save(path / "item_ids.npy", self.item_ids)

    @classmethod
    def load(cls, path: Path) -> Self:
        cfg = read_config(path, cls.name)
        n_baskets = int(cfg.pop("n_baskets"))
        all_positive = bool(cfg.pop("all_positive", False))  # absent before refreshes could fold events in
        model = cls(**cfg)
        model.all_positive = all_positive
        model._set(load_sparse(path / "pair_counts.npz"), load_array(path / "item_counts.npy"), n_baskets,
                   load_array(path / "item_ids.npy"))
        return model
