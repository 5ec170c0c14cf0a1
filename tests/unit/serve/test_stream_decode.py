"""The event stream's wire format: what a worker writes (`encode`) a consumer reads back (`decode`) unchanged, also
across entries of different ages (written before `request_id` existed) in one round."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import polars as pl

from aisle.serve.stream import decode, decode_entries, encode
from aisle.types import EVENT_SCHEMA


def _event(n: int, **extra: object) -> dict[str, object]:
    return {"event_id": f"e{n}", "user_id": f"u{n % 3}", "item_id": f"i{n}", "event_type": "view",
            "timestamp": datetime(2026, 1, 2, 3, 4, 5, n, tzinfo=UTC), "session_id": None, "value": None,
            "query": None, "request_id": None, **extra}


def test_encoded_events_decode_to_the_same_rows_and_entry_sizes() -> None:
    first = [_event(1, value=2.0, session_id="s"), _event(2, request_id="r-1")]
    second = [_event(3, item_id=None, event_type="search", query="red shoes")]
    payloads = [b"[" + b",".join(encode(e) for e in entry) + b"]" for entry in (first, second)]
    frame, counts = decode_entries(payloads)
    assert counts == [2, 1]
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
    assert frame.to_dicts() == [*first, *second]  # the microsecond of each time kept


def test_an_entry_from_before_request_id_decodes_with_it_null_beside_a_new_one() -> None:
    old = orjson.dumps([["e1", "u1", "i1", "view", 1_000_000, None, 3, None]])  # 8 fields, an integer value
    new = b"[" + encode(_event(2, request_id="r-2")) + b"]"
    frame = decode([old, new])
    assert frame["request_id"].to_list() == [None, "r-2"]
    assert frame["value"].to_list() == [3.0, None]
    assert frame["timestamp"].to_list()[0] == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_no_entries_decode_to_an_empty_frame_of_the_schema() -> None:
    frame, counts = decode_entries([])
    assert frame.height == 0 and counts == [] and frame.schema == pl.Schema(EVENT_SCHEMA)
