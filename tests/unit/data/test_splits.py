from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.splits import leave_one_out, temporal_split
from aisle.types import Event, EventType, events_frame
from tests.conftest import shared_path

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _log(spec: dict[str, list[str]]) -> pl.DataFrame:
    """spec: user -> list of 'type:item' in time order."""
    rows = []
    for u, seq in spec.items():
        for k, tok in enumerate(seq):
            typ, item = tok.split(":")
            rows.append(Event(u, item, EventType(typ), T0 + timedelta(hours=k)))
    return events_frame(rows)


def _keys(df: pl.DataFrame) -> set[tuple]:
    return set(df.select("user_id", "item_id", "timestamp").iter_rows())


def test_leave_one_out_last_is_test_second_last_is_valid() -> None:
    split = leave_one_out(_log({"a": ["view:1", "view:2", "view:3", "view:4"], "b": ["view:5", "view:6"]}))
    assert split.test.select("user_id", "item_id").rows() == [("a", "4")]
    assert split.valid.select("user_id", "item_id").rows() == [("a", "3")]
    # b has too few events to be evaluated: all of it trains
    assert sorted(split.train.select("user_id", "item_id").rows()) == [("a", "1"), ("a", "2"), ("b", "5"), ("b", "6")]


def test_leave_one_out_with_target_types_keeps_gap_and_drops_future() -> None:
    log = _log({"a": ["view:1", "purchase:1", "view:2", "purchase:2", "view:3", "purchase:3", "view:9"]})
    split = leave_one_out(log, target_types=["purchase"])
    assert split.test["item_id"].to_list() == ["3"]
    assert split.valid["item_id"].to_list() == ["2"]
    assert split.gap["item_id"].to_list() == ["3"]  # the view between the two targets
    assert split.train["item_id"].to_list() == ["1", "1", "2"]
    assert "9" not in split.history("test")["item_id"].to_list()  # after the test target: future, nowhere


def test_no_test_event_reaches_training_or_validation_history() -> None:
    log = _log({u: [f"view:{(k * 7 + i) % 13}" for k in range(6)] for i, u in enumerate("abcdefgh")})
    split = leave_one_out(log)
    assert not _keys(split.test) & _keys(split.train)
    assert not _keys(split.test) & _keys(split.history("valid"))
    assert not _keys(split.valid) & _keys(split.train)
    # every training event of a user is strictly before that user's validation target
    last_train = split.train.group_by("user_id").agg(pl.col("timestamp").max())
    joined = last_train.join(split.valid.select("user_id", pl.col("timestamp").alias("t")), on="user_id")
    assert (joined["timestamp"] < joined["t"]).all()


def test_temporal_split_is_a_clean_cut_in_time() -> None:
    log = _log({u: [f"view:{k}" for k in range(20)] for u in "abc"})
    split = temporal_split(log, valid_fraction=0.1, test_fraction=0.2)
    assert split.train["timestamp"].max() < split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() < split.test["timestamp"].min()
    assert split.train.height + split.valid.height + split.test.height == log.height
    with pytest.raises(ValueError, match="after test_start"):
        temporal_split(log, valid_start=T0 + timedelta(hours=10), test_start=T0)


def test_empty_log_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        temporal_split(events_frame([]))


@pytest.mark.realdata
def test_beauty_leave_one_out_matches_protocol() -> None:
    data = read_dataspec(f"s3rec:{shared_path('amazon-s3rec/Beauty.txt')}")
    split = leave_one_out(data.events)
    assert split.test.height == split.valid.height == 22_363
    assert split.train.height == 198_502 - 2 * 22_363
    assert not _keys(split.test) & _keys(split.train)
