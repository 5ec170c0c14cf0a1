"""Non-personalised baselines: all-time popularity and time-decayed "trending".

Why they exist: they are the floor every other model must beat, the answer for a visitor with no history,
and a cheap fallback that never fails. Both score every query alike, so scores are rank-transformed
(`stable_rank_scores`) to make ties explicit: equal counts are ordered by item index, and top-k is
reproducible. Trending decays each event by `0.5 ** (age / half_life)`, its age measured from the latest
training timestamp (not the wall clock), so a model fitted on last month's log means the same tomorrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.models.common import load_array, stable_rank_scores


class Popularity:
    """Global counts of training events: plain (one per event) or summed event weights (`weighted`)."""

    name: ClassVar[str] = "pop"
    search_space: ClassVar[dict[str, list[Any]]] = {"weighted": [False, True]}

    def __init__(self, weighted: bool = False) -> None:
        self.weighted = weighted
        self.counts: np.ndarray | None = None
        self._scores: np.ndarray | None = None

    def _config(self) -> dict[str, Any]:
        return {"weighted": self.weighted}

    def fit(self, data: TrainData) -> Self:
        ev = data.events.filter(pl.col("weight") > 0)
        w = ev["weight"].to_numpy().astype(np.float64) if self.weighted else np.ones(ev.height)
        self._set(np.bincount(ev["item_idx"].to_numpy(), weights=w, minlength=data.n_items))
        return self

    def _set(self, counts: np.ndarray) -> None:
        self.counts = np.asarray(counts, dtype=np.float64)
        self._scores = stable_rank_scores(self.counts)

    def score(self, batch: QueryBatch) -> np.ndarray:
        if self._scores is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return np.broadcast_to(self._scores, (len(batch), len(self._scores))).copy()

    def save(self, path: Path) -> None:
        if self.counts is None:
            raise RuntimeError(f"{self.name} is not fitted")
        write_config(path, self.name, self._config())
        np.save(path / "counts.npy", self.counts)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls(**read_config(path, cls.name))
        model._set(load_array(path / "counts.npy"))
        return model


class Trending(Popularity):
    """Event counts decayed with a half-life, relative to the latest training timestamp."""

    name: ClassVar[str] = "trending"
    search_space: ClassVar[dict[str, list[Any]]] = {"half_life_days": [7.0, 1.0, 30.0], "weighted": [False, True]}

    def __init__(self, half_life_days: float = 7.0, weighted: bool = False) -> None:
        super().__init__(weighted=weighted)
        if half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        self.half_life_days = half_life_days

    def _config(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days, "weighted": self.weighted}

    def fit(self, data: TrainData) -> Self:
        ev = data.events.filter(pl.col("weight") > 0)
        if ev.is_empty():
            self._set(np.zeros(data.n_items))
            return self
        ts = ev["timestamp"]
        age_days = ((ts.max() - ts).dt.total_microseconds().to_numpy().astype(np.float64)) / 86_400e6
        w = ev["weight"].to_numpy().astype(np.float64) if self.weighted else np.ones(ev.height)
        w = w * np.exp2(-age_days / self.half_life_days)
        self._set(np.bincount(ev["item_idx"].to_numpy(), weights=w, minlength=data.n_items))
        return self
