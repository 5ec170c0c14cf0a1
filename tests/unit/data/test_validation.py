"""The shared validators: what they reject, and the exact words they use."""

from __future__ import annotations

import polars as pl
import pytest

from aisle.data.validation import DataError, RejectLog, parse_timestamps, validate_events, validate_items


def test_items_reject_non_numeric_and_negative_prices_and_bad_available() -> None:
    raw = pl.DataFrame({"item_id": ["a", "b", "c", "d", "e"], "price": ["$3.50", "free", "-5", None, "2"],
                        "available": ["yes", "no", "true", "0", "maybe"]})
    log = RejectLog(on_error="skip")
    good = validate_items(raw, file="cat.csv", log=log)
    assert good.select("item_id", "price", "available").rows() == [("a", 3.5, True), ("d", None, False)]
    assert [(r.line, r.field, r.reason) for r in log.rejects] == [
        (2, "price", "price 'free' is not a number"),
        (3, "price", "negative price -5"),
        (5, "available", "available 'maybe' is not true/false"),
    ]


def test_first_bad_row_raises_under_fail() -> None:
    raw = pl.DataFrame({"user_id": ["u", "u", ""], "item_id": ["1", "2", "3"], "event_type": ["view", "buy", "view"],
                        "timestamp": ["1700000000", "1700000001", "1700000002"]})
    with pytest.raises(DataError, match=r"^log.csv:2: events field 'event_type': unknown event type 'buy'"):
        validate_events(raw, file="log.csv", log=RejectLog())


def test_timestamps_with_format_and_mixed_epoch_column() -> None:
    fmt = parse_timestamps(pl.Series(["01/02/2026 10:00", "31/02/2026 10:00"]), fmt="%d/%m/%Y %H:%M")
    assert fmt[0].isoformat() == "2026-02-01T10:00:00+00:00" and fmt[1] is None
    mixed = parse_timestamps(pl.Series(["1700000000", "soon"]))
    assert mixed[0].year == 2023 and mixed[1] is None


def test_search_events_need_no_item() -> None:
    raw = pl.DataFrame({"user_id": ["u", "u"], "item_id": [None, None], "event_type": ["search", "view"],
                        "timestamp": [1, 2], "query": ["boots", None]})
    log = RejectLog(on_error="skip")
    good = validate_events(raw, file="x", log=log)
    assert good["event_type"].to_list() == ["search"]
    assert [(r.field, r.reason) for r in log.rejects] == [("item_id", "missing item id")]
