"""The rules a record must keep, stated once for every path it comes by.

A file read by `aisle ingest` is checked column-wise (`aisle.data.validation`, Polars expressions); a record
posted to the API is checked one at a time (`aisle.serve.schemas`, pydantic). Both take their rules and their
reject messages from here, so the API cannot store what ingest would refuse, and a shopper's id that fails in
one place fails in the other with the same words:

- ids (user, item, event, session) are non-empty after stripping surrounding spaces and hold no control
  character (U+0000-U+001F, U+007F): a NUL or a newline in an id breaks every log line and key that shows it;
- numbers (an event's value, an item's price) are finite: NaN and infinity are refused, and so is a boolean;
- event types are one of `aisle.types.EVENT_TYPES`;
- timestamps lie in `[TIMESTAMP_MIN, now + TIMESTAMP_MAX_AHEAD]`: 1970 (a zero that meant "unknown") and
  9999 (a "never" sentinel) are refused instead of poisoning recency features. Readers of formats without
  time (s3rec, ml1m-sasrec, multibehavior) number events from the epoch and are not checked against it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from aisle.types import EVENT_TYPES

#: Earliest accepted event time: before 1995 there were no web shops, so an older time is a placeholder.
TIMESTAMP_MIN = datetime(1995, 1, 1, tzinfo=UTC)
#: How far ahead of this machine's clock an event may be (clock skew between a shop's servers and this one).
TIMESTAMP_MAX_AHEAD = timedelta(days=1)

#: Control characters an id may not hold (as a regex class, the same text for Python, Rust and JSON Schema).
CONTROL_CLASS = r"[\x00-\x1f\x7f]"
_CONTROL = re.compile(CONTROL_CLASS)
#: JSON Schema pattern of an id: at least one character that is not a space, and no control character.
ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s][^\x00-\x1f\x7f]*$"
ID_MAX_LENGTH = 256


def label(field: str) -> str:
    """How messages name a field: `user_id` -> "user id"."""
    return field.replace("_", " ")


# ---- messages (one wording for both paths) -------------------------------------------------------------


def missing(field: str) -> str:
    return f"missing {label(field)}"


def control_character(field: str) -> str:
    return f"{label(field)} contains a control character"


def not_finite(field: str, value: object) -> str:
    return f"{field} '{value}' is not a finite number"


def not_a_number(field: str, value: object) -> str:
    """A price (or another number that may come as text, "$3.50") that does not parse or is not finite."""
    return f"{field} '{value}' is not a number"


def negative(field: str, value: object) -> str:
    return f"negative {field} {value}"


def unknown_event_type(value: object) -> str:
    return f"unknown event type '{value}' (expected one of {', '.join(EVENT_TYPES)})"


def window_text() -> str:
    return f"{TIMESTAMP_MIN:%Y-%m-%d} to now + {TIMESTAMP_MAX_AHEAD.days} day"


def outside_window(value: object) -> str:
    return f"timestamp '{value}' is outside the accepted window ({window_text()})"


def timestamp_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The accepted [earliest, latest] event time, as of `now` (default: this machine's clock)."""
    return TIMESTAMP_MIN, (now or datetime.now(UTC)) + TIMESTAMP_MAX_AHEAD


# ---- one record (the API) -------------------------------------------------------------------------------


def check_id(field: str, value: str) -> str:
    """`value` stripped, or ValueError with the shared message."""
    out = value.strip()
    if not out:
        raise ValueError(missing(field))
    if _CONTROL.search(out):
        raise ValueError(control_character(field))
    return out


def check_number(field: str, value: Any, message: Callable[[str, object], str] = not_finite) -> float:
    """A finite int or float (not a bool, not text), or ValueError with the shared message."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(message(field, str(value).lower() if isinstance(value, bool) else value))
    return float(value)


def check_event_type(value: Any) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(unknown_event_type(value))
    return str(value)


def check_timestamp(value: datetime, now: datetime | None = None) -> datetime:
    """`value` in UTC (a naive time is taken as UTC) if it lies in the window, else ValueError."""
    ts = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    lo, hi = timestamp_window(now)
    if not lo <= ts <= hi:
        raise ValueError(outside_window(ts.isoformat()))
    return ts


# ---- a column (the file readers) ------------------------------------------------------------------------


def has_control(expr: pl.Expr) -> pl.Expr:
    """True where the text holds a control character (null stays null)."""
    return expr.str.contains(CONTROL_CLASS)


def outside_window_expr(expr: pl.Expr, now: datetime | None = None) -> pl.Expr:
    """True where a UTC datetime lies outside the window (null stays null)."""
    lo, hi = timestamp_window(now)
    return (expr < pl.lit(lo)) | (expr > pl.lit(hi))


__all__ = [
    "CONTROL_CLASS",
    "ID_MAX_LENGTH",
    "ID_PATTERN",
    "TIMESTAMP_MAX_AHEAD",
    "TIMESTAMP_MIN",
    "check_event_type",
    "check_id",
    "check_number",
    "check_timestamp",
    "control_character",
    "has_control",
    "missing",
    "negative",
    "not_a_number",
    "not_finite",
    "outside_window",
    "outside_window_expr",
    "timestamp_window",
    "unknown_event_type",
]
