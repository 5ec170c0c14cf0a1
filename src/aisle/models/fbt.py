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


def baskets(data: TrainData, event_types: tuple[str, ...], window_hours: float) -> sp.csr_matrix:
    """baskets x items, 1 where the item is in the basket (see the module docstring for what a basket is)."""
    ev = data.events.filter(pl.col("weight") > 0)
    chosen = ev.filter(pl.col("event_type").is_in(list(event_types)))
    ev = chosen if chosen.height else ev
    if ev.is_empty():
        return sp.csr_matrix((0, data.n_items), dtype=np.float32)
    users = ev["user_idx"].to_numpy()
    gap_h = ev["timestamp"].diff().dt.total_microseconds().fill_null(0).to_numpy().astype(np.float64) / 3.6e9
    new = np.r_[True, (users[1:] != users[:-1]) | (gap_h[1:] > window_hours)]
    basket = np.cumsum(new) - 1
    m = sp.csr_matrix((np.ones(ev.height, np.float32), (basket, ev["item_idx"].to_numpy())),
                      shape=(int(basket[-1]) + 1, data.n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


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
        self.pair_counts: sp.csr_matrix | None = None  # baskets holding both a and b, for rules that passed
        self.item_counts: np.ndarray | None = None  # baskets holding each item
        self.n_baskets = 0
        self.item_ids: np.ndarray | None = None
        self._strength: sp.csr_matrix | None = None
        self._tie: np.ndarray | None = None

    def _config(self) -> dict[str, Any]:
        return {"window_hours": self.window_hours, "event_types": list(self.event_types),
                "min_count": self.min_count, "min_confidence": self.min_confidence, "min_lift": self.min_lift,
                "metric": self.metric, "history_decay": self.history_decay}

    def fit(self, data: TrainData) -> Self:
        b = baskets(data, self.event_types, self.window_hours)
        item_counts = np.asarray(b.sum(axis=0)).ravel().astype(np.float64)
        co = (b.T @ b).tocoo()
        keep = co.row != co.col
        rows, cols, both = co.row[keep], co.col[keep], co.data[keep].astype(np.float64)
        n = max(b.shape[0], 1)
        conf = both / item_counts[rows]
        lift = conf * n / item_counts[cols]
        ok = (both >= self.min_count) & (conf >= self.min_confidence) & (lift >= self.min_lift)
        pairs = sp.csr_matrix((both[ok].astype(np.float32), (rows[ok], cols[ok])), shape=(data.n_items,) * 2)
        self._set(pairs, item_counts, b.shape[0], np.asarray(data.items.ids, dtype=str))
        return self

    def _set(self, pair_counts: sp.csr_matrix, item_counts: np.ndarray, n_baskets: int, item_ids: np.ndarray) -> None:
        self.pair_counts, self.item_counts, self.n_baskets = pair_counts.tocsr(), item_counts, int(n_baskets)
        self.item_ids = item_ids
        coo = self.pair_counts.tocoo()
        conf = coo.data / self.item_counts[coo.row]
        val = conf if self.metric == "confidence" else conf * max(self.n_baskets, 1) / self.item_counts[coo.col]
        self._strength = sp.csr_matrix((val.astype(np.float32), (coo.row, coo.col)), shape=self.pair_counts.shape)
        top = self.item_counts.max() if len(self.item_counts) and self.item_counts.max() > 0 else 1.0
        self._tie = (_TIE * self.item_counts / top).astype(np.float32)

    def pairs(self) -> pl.DataFrame:
        """Every kept rule a → b with its statistics, strongest confidence first."""
        if self.pair_counts is None or self.item_counts is None or self.item_ids is None:
            raise RuntimeError(f"{self.name} is not fitted")
        coo = self.pair_counts.tocoo()
        both = coo.data.astype(np.float64)
        n = max(self.n_baskets, 1)
        conf = both / self.item_counts[coo.row]
        frame = pl.DataFrame({
            "item_a": self.item_ids[coo.row].tolist(),
            "item_b": self.item_ids[coo.col].tolist(),
            "a_idx": coo.row.astype(np.int32),
            "b_idx": coo.col.astype(np.int32),
            "count": both.astype(np.int64),
            "support": both / n,
            "confidence": conf,
            "lift": conf * n / self.item_counts[coo.col],
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
        write_config(path, self.name, {**self._config(), "n_baskets": self.n_baskets})
        save_sparse(path / "pair_counts.npz", self.pair_counts)
        np.save(path / "item_counts.npy", self.item_counts)
        np.save(path / "item_ids.npy", self.item_ids)

    @classmethod
    def load(cls, path: Path) -> Self:
        cfg = read_config(path, cls.name)
        n_baskets = int(cfg.pop("n_baskets"))
        model = cls(**cfg)
        model._set(load_sparse(path / "pair_counts.npz"), load_array(path / "item_counts.npy"), n_baskets,
                   load_array(path / "item_ids.npy"))
        return model
