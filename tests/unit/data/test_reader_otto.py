from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

SESSIONS = FIXTURES / "otto" / "sessions.jsonl"


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _line(session: object, *events: tuple[object, object, object]) -> str:
    return json.dumps({"session": session, "events": [{"aid": a, "ts": t, "type": k} for a, t, k in events]})


def test_sessions_explode_into_typed_events() -> None:
    data = read_dataspec(f"otto:{SESSIONS}")
    ev = data.events
    assert ev.select("user_id", "session_id", "item_id", "event_type", "timestamp").rows() == [
        ("7", "7", "101", "click", _ms(1_659_304_800_123)),
        ("7", "7", "202", "add_to_cart", _ms(1_659_304_900_456)),
        ("7", "7", "101", "purchase", _ms(1_659_305_000_000)),
        ("8", "8", "42", "click", _ms(1_661_723_999_999)),
    ]
    assert ev["timestamp"][0] == datetime(2022, 7, 31, 22, 0, 0, 123_000, tzinfo=UTC)  # milliseconds kept
    assert ev["value"].null_count() == 4
    # session 9 has no events: nothing to load, nothing lost
    assert data.accounting()["events"] == {"total": 4, "loaded": 4, "rejected": 0}


def test_seconds_option_and_gzip(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl.gz"
    with gzip.open(f, "wt") as fh:
        fh.write(_line(1, (5, 1_659_304_800, "carts")) + "\n")
    ev = read_dataspec(f"otto:{f}?ts_unit=s").events
    assert ev.select("item_id", "event_type", "timestamp").rows() == [
        ("5", "add_to_cart", datetime(2022, 7, 31, 22, 0, tzinfo=UTC))]


def test_bad_event_is_rejected_alone_and_bad_line_counts_once(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    good = _line(1, (10, 1_659_304_800_000, "clicks"), (11, 1_659_304_800_001, "views"),
                 (12, 1_659_304_800_002, "orders"))
    f.write_text(good + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: events field 'event_type': unknown OTTO event type 'views'"):
        read_dataspec(f"otto:{f}")
    lines = [
        good,
        _line(2, (20, "soon", "clicks"), ("x1", 1_659_304_800_000, "carts")),
        json.dumps({"session": 3, "events": {"aid": 1}}),  # not a list: one reject for the line
        '{"session": 4, "events": [{"aid": 40, "ts": 16593',  # truncated last line: one reject
    ]
    f.write_text("\n".join(lines))
    data = read_dataspec(f"otto:{f}", on_error="skip")
    assert data.accounting()["events"] == {"total": 3 + 2 + 1 + 1, "loaded": 2, "rejected": 5}
    assert sorted((r.line, r.field, r.reason) for r in data.log.rejects) == [
        (1, "event_type", "unknown OTTO event type 'views' (expected clicks, carts or orders)"),
        (2, "item_id", "aid 'x1' is not an integer id"),
        (2, "timestamp", "bad timestamp 'soon' (expected Unix ms)"),
        (3, "events", "not an OTTO session: no 'events' list"),
        (4, "(line)", "truncated JSON line"),
    ]
    assert data.events.select("item_id", "event_type").rows() == [("10", "click"), ("12", "purchase")]


def test_nested_value_rejects_its_line(tmp_path: Path) -> None:
    f = tmp_path / "nested.jsonl"
    f.write_text(_line(1, (10, 1_659_304_800_000, "clicks")) + "\n"
                 + _line(2, ([1, 2], 1_659_304_800_000, "clicks"), (21, 1_659_304_800_000, "carts")) + "\n")
    data = read_dataspec(f"otto:{f}", on_error="skip")
    assert data.accounting()["events"] == {"total": 3, "loaded": 1, "rejected": 2}
    assert {(r.line, r.field) for r in data.log.rejects} == {(2, "events")}


@pytest.mark.realdata
def test_real_sample_counts() -> None:
    data = read_dataspec(f"otto:{shared_path('otto-sessions-sample/train_sample.jsonl')}")
    ev = data.events
    assert (ev.height, ev["session_id"].n_unique(), ev["item_id"].n_unique()) == (862, 20, 510)
    assert dict(ev.group_by("event_type").len().rows()) == {"click": 800, "add_to_cart": 52, "purchase": 10}
    assert (ev["timestamp"].min(), ev["timestamp"].max()) == (_ms(1_659_304_800_025), _ms(1_661_723_997_885))
    assert (ev["user_id"] == ev["session_id"]).all()
    assert data.log.rejects == []
