"""The trending source: what many shoppers engaged with lately (decayed counts), the same top items for every
query; the fallback for a visitor with no history, and the one kind that follows new events between refits."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl

from aisle.models.base import TrainData
from aisle.pipeline.sources.base import CandidateSource, Contributions, Describe, SourceBatch
from aisle.query import Query


class TrendingSource(CandidateSource):
    kind: ClassVar[str] = "trending"
    models: ClassVar[tuple[str, ...] | None] = ("trending", "pop")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts = np.zeros(0, np.float64)
        self.latest_us: int = 0  # the newest event counted, in microseconds (the decay's "now")
        self.scores = np.zeros(0, np.float32)  # counts scaled to [0, 1] (the `trending` feature of every candidate)
        self.top = np.zeros(0, np.int64)
        self.top_scores = np.zeros(0, np.float64)

    def _derive(self, data: TrainData) -> None:
        positive = data.events.filter(pl.col("weight") > 0)
        latest = int(positive["timestamp"].dt.epoch("us").max() or 0) if positive.height else 0
        self._set(np.asarray(self.model.counts, np.float64), latest)

    def _set(self, counts: np.ndarray, latest_us: int) -> None:
        """New counts, and what every request reads from them, computed once here rather than per request (a
        sort of the whole catalog costs milliseconds on 100,000 items)."""
        self.counts, self.latest_us = counts, latest_us
        self.scores = (counts / max(float(counts.max(initial=0.0)), 1e-12)).astype(np.float32)
        self.top = np.argsort(-self.scores, kind="stable")[: self.config.trending].astype(np.int64)
        self.top_scores = self.scores[self.top].astype(np.float64)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts, "latest_us": np.array([self.latest_us], np.int64)}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._set(arrays["counts"], int(arrays["latest_us"][0]))

    def candidates(self, batch: SourceBatch) -> Contributions:
        top = self.top
        n = len(batch)
        value = np.tile(self.top_scores, n)
        return Contributions(np.repeat(np.arange(n), len(top)), np.tile(top, n), value,
                             np.full(n * len(top), -1, np.int64), value)

    def explain(self, item: int, anchor: int, query: Query, names: Describe) -> dict[str, Any]:
        where = names.category(item)
        return {"type": "trending", "text": f"Trending in {where}" if where else "Trending now"}

    def update(self, events: pl.DataFrame, n_items: int) -> bool:
        """Decay the counts to the newest event and add the new ones (weighted like the model's fit), so
        today's purchases move trending without a refit. `events`: item_idx, timestamp, weight columns."""
        positive = events.filter((pl.col("weight") > 0) & (pl.col("item_idx") >= 0))
        if "is_new" in positive.columns:
            positive = positive.filter(pl.col("is_new"))
        if positive.is_empty():
            return False
        half_life_us = float(getattr(self.model, "half_life_days", 0.0) or 0.0) * 86_400e6
        stamps = positive["timestamp"].dt.epoch("us").to_numpy().astype(np.int64)
        now = max(self.latest_us, int(stamps.max()))
        weights = positive["weight"].to_numpy().astype(np.float64) if getattr(self.model, "weighted", False) \
            else np.ones(positive.height)
        counts = np.pad(self.counts, (0, max(0, n_items - len(self.counts))))
        if half_life_us:
            counts *= np.exp2(-(now - self.latest_us) / half_life_us)
            weights = weights * np.exp2(-(now - stamps) / half_life_us)
        counts += np.bincount(positive["item_idx"].to_numpy(), weights=weights, minlength=len(counts))[: len(counts)]
        self._set(counts, now)
        return True


__all__ = ["TrendingSource"]
