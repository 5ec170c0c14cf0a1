from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

VIEWS = FIXTURES / "diginetica" / "train-item-views.csv"
HEADER = "session_id;user_id;item_id;timeframe;eventdate\n"


def _day(y: int, m: int, d: int, ms: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC) + timedelta(milliseconds=ms)


def test_views_shoppers_and_timestamps() -> None:
    data = read_dataspec(f"diginetica:{VIEWS}")
    ev = data.events
    assert set(ev["event_type"]) == {"view"}
    assert ev.select("session_id", "user_id", "item_id", "timestamp").rows() == [
        # anonymous session: the session is the shopper
        ("1", "session:1", "1001", _day(2016, 5, 9, 500_000)),
        ("1", "session:1", "1002", _day(2016, 5, 9, 70_000)),
        # the anonymous view of a session whose other row names user 4 is user 4's
        ("2", "4", "2001", _day(2016, 3, 21, 7_000)),
        ("2", "4", "2002", _day(2016, 3, 21, 270_000)),
        # past midnight the date changes but timeframe keeps counting from the session start (on the 20th)
        ("3", "session:3", "3001", _day(2016, 3, 20, 550_000)),
        ("3", "session:3", "3002", _day(2016, 3, 20, 730_000)),
        # a session naming two users: each row keeps its own
        ("4", "800", "4001", _day(2016, 3, 15, 16_000)),
        ("4", "17000", "4001", _day(2016, 3, 15, 180_000)),
    ]
    assert data.accounting()["events"] == {"total": 8, "loaded": 8, "rejected": 0}


def test_cup_header_spelling_and_folder_path(tmp_path: Path) -> None:
    f = tmp_path / "train-item-views.csv"
    f.write_text("sessionId;userId;itemId;timeframe;eventdate\n1;NA;9;1000;2016-01-01\n")
    for spec in (f"diginetica:{f}", f"diginetica:{tmp_path}"):
        ev = read_dataspec(spec).events
        assert ev.select("user_id", "item_id", "timestamp").rows() == [("session:1", "9", _day(2016, 1, 1, 1000))]


def test_bad_timeframe_date_and_truncated_row(tmp_path: Path) -> None:
    f = tmp_path / "views.csv"
    f.write_text(HEADER + "1;NA;9;1000;2016-01-01\n1;NA;10;12.5s;2016-01-01\n")
    with pytest.raises(DataError, match=r"views.csv:3: events field 'timeframe': bad timeframe '12.5s'"):
        read_dataspec(f"diginetica:{f}")
    f.write_text(HEADER + "1;NA;9;1000;2016-01-01\n1;NA;10;12;2016-13-01\n2;NA;11;5\n2;;12;7;2016-01-02\n")
    data = read_dataspec(f"diginetica:{f}", on_error="skip")
    assert data.accounting()["events"] == {"total": 4, "loaded": 2, "rejected": 2}
    assert sorted((r.line, r.field, r.reason) for r in data.log.rejects) == [
        (3, "eventdate", "bad date '2016-13-01' (expected YYYY-MM-DD)"),
        (4, "eventdate", "truncated row: expected 5 fields, got 4"),
    ]
    # an empty user id is anonymous, like NA
    assert data.events.select("user_id", "item_id").rows() == [("session:1", "9"), ("session:2", "12")]


@pytest.mark.realdata
def test_real_sample_counts() -> None:
    data = read_dataspec(f"diginetica:{shared_path('diginetica-sample/sample_train-item-views.csv')}")
    ev = data.events
    assert (ev.height, ev["session_id"].n_unique(), ev["item_id"].n_unique()) == (12_391, 2_986, 7_139)
    # 1,270 logged-in users + 1,718 sessions that name no user
    assert ev["user_id"].n_unique() == 2_988
    assert ev["user_id"].str.starts_with("session:").sum() == 7_660
    assert (ev["timestamp"].min(), ev["timestamp"].max()) == (_day(2016, 1, 3, 7_112), _day(2016, 6, 1, 1_124_305))
    # session 629 runs past midnight (its last 11 rows say 2016-03-21): all of it counts from the 20th
    s629 = ev.filter(pl.col("session_id") == "629")["timestamp"]
    assert (s629.min(), s629.max()) == (_day(2016, 3, 20, 13_879), _day(2016, 3, 20, 1_184_885))
    assert data.log.rejects == []
