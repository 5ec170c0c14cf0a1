"""Evaluation splits that never let a test event reach training data.

Both splits return a `Split`: `train` is what a model may fit on, `valid`/`test` hold the targets,
and `history("valid")`/`history("test")` give what a model may see when predicting each target (for
the test target that includes the validation target, as in the published leave-one-out protocol).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

_ORDER = "_order"


@dataclass(frozen=True, slots=True)
class Split:
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    gap: pl.DataFrame
    """Events after the validation target and before the test target that are not targets themselves
    (e.g. views between two purchases): history for the test target, never training data."""

    def history(self, stage: str) -> pl.DataFrame:
        """Events a model may see when predicting the `stage` targets ("valid" or "test")."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return pl.concat([self.train, self.valid, self.gap], how="vertical").sort("user_id", "timestamp")
        raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")


def _ordered(events: pl.DataFrame) -> pl.DataFrame:
    # a stable sort keeps the source order for equal timestamps (sequence formats have only order)
    return events.with_row_index(_ORDER).sort(["user_id", "timestamp", _ORDER], maintain_order=True)


def leave_one_out(events: pl.DataFrame, *, target_types: Iterable[str] | None = None, min_targets: int = 3) -> Split:
    """Per user: the last target event is the test target, the one before it the validation target.

    Targets are events of `target_types` (all types when None). Users with fewer than `min_targets`
    target events keep everything in training (they are never evaluated). Events after a user's test
    target are future data and appear nowhere.
    """
    ev = _ordered(events)
    is_target = pl.col("event_type").is_in(list(target_types)) if target_types is not None else pl.lit(True)
    ev = ev.with_columns(is_target.alias("_t"))
    ev = ev.with_columns(
        pl.col("_t").cast(pl.Int32).reverse().cum_sum().reverse().over("user_id").alias("_rank_from_end"),
        pl.col("_t").cast(pl.Int32).sum().over("user_id").alias("_n_targets"),
    )
    # _rank_from_end counts target events at or after each row: 1 = last target and later, 2 = valid ...
    evaluated = pl.col("_n_targets") >= min_targets
    test = ev.filter(evaluated & pl.col("_t") & (pl.col("_rank_from_end") == 1))
    valid = ev.filter(evaluated & pl.col("_t") & (pl.col("_rank_from_end") == 2))
    gap = ev.filter(evaluated & ~pl.col("_t") & (pl.col("_rank_from_end") == 1))
    train = ev.filter(~evaluated | (pl.col("_rank_from_end") >= 3) | (~pl.col("_t") & (pl.col("_rank_from_end") == 2)))
    drop = [_ORDER, "_t", "_rank_from_end", "_n_targets"]
    return Split(*(f.drop(drop) for f in (train, valid, test, gap)))


def temporal_split(
    events: pl.DataFrame,
    *,
    valid_start: datetime | None = None,
    test_start: datetime | None = None,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Split:
    """A global cut in time: train < valid_start <= valid < test_start <= test.

    Without explicit dates the cuts fall at the quantiles that leave `valid_fraction`/`test_fraction`
    of the events after them. Every training event is strictly earlier than every evaluation event.
    """
    if events.is_empty():
        raise ValueError("cannot split an empty event log")
    ts = events["timestamp"]
    if test_start is None:
        test_start = ts.quantile(1 - test_fraction, interpolation="higher")  # type: ignore[assignment]
    if valid_start is None:
        valid_start = ts.quantile(1 - test_fraction - valid_fraction, interpolation="higher")  # type: ignore[assignment]
    if valid_start > test_start:  # type: ignore[operator]
        raise ValueError(f"valid_start {valid_start} is after test_start {test_start}")
    ev = _ordered(events)
    t = pl.col("timestamp")
    train = ev.filter(t < valid_start)
    valid = ev.filter((t >= valid_start) & (t < test_start))
    test = ev.filter(t >= test_start)
    return Split(train.drop(_ORDER), valid.drop(_ORDER), test.drop(_ORDER), valid.clear().drop(_ORDER))
