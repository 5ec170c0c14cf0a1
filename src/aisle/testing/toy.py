"""Toy data and a minimal reference recommender for tests.

Tests of the evaluation harness, the CLI and the model contract need data whose answers can be worked
out by hand, and a model that is trivially correct, without depending on the real datasets or on the
production models under test. Everything here is small, deterministic (seeded) and fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.types import EVENT_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sequences_frame(sequences: Mapping[str, Sequence[str]], *, event_type: str = "purchase",
                    start: datetime = T0) -> pl.DataFrame:
    """User -> items in time order, as an EVENT_SCHEMA frame (one event per second from `start`, per user).

    Rows come in the mapping's order, so the items' first-appearance order is predictable.
    """
    users, items, times = [], [], []
    for user, seq in sequences.items():
        for pos, item in enumerate(seq):
            users.append(user)
            items.append(str(item))
            times.append(start + timedelta(seconds=pos))
    frame = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.String), "item_id": pl.Series(items, dtype=pl.String),
                          "timestamp": pl.Series(times, dtype=pl.Datetime("us", "UTC"))})
    frame = frame.with_columns(pl.lit(event_type).alias("event_type"))
    return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                         for c, t in EVENT_SCHEMA.items()])


def toy_sequences(n_users: int = 60, n_items: int = 40, *, min_len: int = 4, max_len: int = 10, skew: float = 1.2,
                  seed: int = 0) -> dict[str, list[str]]:
    """Random purchase sequences with Zipf-like item popularity (item "i0" most popular), no repeats per user."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** skew
    p /= p.sum()
    out = {}
    for u in range(n_users):
        length = int(rng.integers(min_len, max_len + 1))
        seq = rng.choice(n_items, size=min(length, n_items), replace=False, p=p)
        out[f"u{u}"] = [f"i{i}" for i in seq]
    return out


def toy_events(n_users: int = 60, n_items: int = 40, *, seed: int = 0, **kwargs: Any) -> pl.DataFrame:
    """`toy_sequences` as an EVENT_SCHEMA frame of purchases."""
    return sequences_frame(toy_sequences(n_users, n_items, seed=seed, **kwargs))


class ToyPopularity:
    """Scores every item by its summed event weight in the training data, times `sign`.

    `sign=-1` ranks the least popular first: a deliberately bad setting, so that hyper-parameter search
    has a right answer. The history of a query is ignored (the protocol excludes seen items).
    """

    name: ClassVar[str] = "toy-pop"
    search_space: ClassVar[dict[str, list]] = {"sign": [1.0, -1.0]}

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = float(sign)
        self.counts = np.zeros(0, np.float32)

    def fit(self, data: TrainData) -> Self:
        ev = data.events
        self.counts = np.bincount(ev["item_idx"].to_numpy(), weights=ev["weight"].to_numpy(),
                                  minlength=data.n_items).astype(np.float32)
        return self

    def score(self, batch: QueryBatch) -> np.ndarray:
        return np.broadcast_to(self.sign * self.counts, (len(batch), len(self.counts)))

    def save(self, path: Path) -> None:
        write_config(path, self.name, {"sign": self.sign})
        np.save(path / "counts.npy", self.counts)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls(**read_config(path, cls.name))
        model.counts = np.load(path / "counts.npy")
        return model

    def __repr__(self) -> str:
        return f"ToyPopularity({json.dumps({'sign': self.sign})})"


__all__ = ["T0", "ToyPopularity", "sequences_frame", "toy_events", "toy_sequences"]
