"""OTTO RecSys dataset (Kaggle "OTTO – Multi-Objective Recommender System"): one JSON session per line.

    {"session": 7, "events": [{"aid": 101, "ts": 1659304800123, "type": "clicks"}, ...]}

PATH is a `.jsonl` file (`.jsonl.gz` too). OTTO's three event types map onto the funnel: clicks -> `click`,
carts -> `add_to_cart`, orders -> `purchase`; any other type is rejected rather than guessed. Sessions are
anonymous and OTTO has no user ids, so a session is the shopper: user_id = session_id = the session number.
`aid` is the article id. `ts` is Unix milliseconds in the original release (kept exactly, UTC); some Kaggle
re-packagings use seconds, so `?ts_unit=s` reads those. OTTO has no item data at all: there is no items table.

Accounting. One line holds a whole session, so the events table counts events, not lines: a good line adds
`len(events)` rows; a line that cannot be a session at all (bad JSON, a truncated last line, bytes that do
not decode, not an object, `events` not a list of objects) is one reject counted as one row, since how many
events it held cannot be known. A damaged event inside a good line (bad aid, ts or type) is rejected alone,
naming the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.textio import iter_jsonl
from aisle.data.validation import LINE, Reject, RejectLog, Rule, apply_rules, validate_events

EVENT_TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}
_EVENTS = pl.List(pl.Struct({"aid": pl.String, "ts": pl.String, "type": pl.String}))


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    ts_unit = options.get("ts_unit", "ms")
    if ts_unit not in ("s", "ms", "us"):
        raise ValueError(f"ts_unit={ts_unit!r}: expected s, ms or us")
    lines: list[int] = []
    sessions: list[str] = []
    events: list[list[Any]] = []
    for no, obj in iter_jsonl(path, table="events", log=log, encoding=options.get("encoding", "utf-8")):
        evs = obj.get("events") if isinstance(obj, dict) else None
        if not isinstance(evs, list) or not all(isinstance(e, dict) for e in evs):
            log.seen("events", 1)
            what = ("not a JSON object" if not isinstance(obj, dict)
                    else "no 'events' list" if not isinstance(evs, list) else "'events' holds a non-object")
            log.add(Reject(str(path), no, "events", "events", f"not an OTTO session: {what}", str(obj)[:500]))
            continue
        log.seen("events", len(evs))
        if evs:
            lines.append(no)
            sessions.append(str(obj["session"]) if obj.get("session") is not None else "")
            events.append(evs)
    frame = pl.DataFrame({
        LINE: pl.Series(lines, dtype=pl.Int64),
        "session_id": pl.Series(sessions, dtype=pl.String),
        "events": _events_series(events, lines, path, log),
    })
    raw = frame.filter(pl.col("events").is_not_null()).explode("events").unnest("events")
    ts = pl.col("ts").str.strip_chars()
    rules: list[Rule] = [
        ("item_id", pl.col("aid").is_not_null() & ~pl.col("aid").str.contains(r"^\s*\d+\s*$"),
         pl.format("aid '{}' is not an integer id", pl.col("aid"))),
        ("timestamp", ts.is_null() | ~ts.str.contains(r"^\d+$"),
         pl.format("bad timestamp '{}' (expected Unix {})", pl.col("ts").fill_null(""), pl.lit(ts_unit))),
        ("event_type", ~pl.col("type").fill_null("").is_in(list(EVENT_TYPES)),
         pl.format("unknown OTTO event type '{}' (expected clicks, carts or orders)", pl.col("type").fill_null(""))),
    ]
    raw = apply_rules(raw, rules, file=str(path), table="events", log=log)
    raw = raw.select(
        LINE,
        pl.col("session_id").alias("user_id"),
        "session_id",
        pl.col("aid").alias("item_id"),
        pl.col("type").replace_strict(EVENT_TYPES, return_dtype=pl.String).alias("event_type"),
        ts.cast(pl.Int64).alias("timestamp"),
    )
    events_frame = validate_events(raw, file=str(path), log=log, ts_unit=ts_unit)
    return Dataset(name=path.name.split(".")[0], events=events_frame, log=log)


def _events_series(events: list[list[Any]], lines: list[int], path: Path, log: RejectLog) -> pl.Series:
    """The sessions' event lists as one typed column, built by Polars in one call.

    Scalars become text (checked by the rules afterwards). A value Polars cannot hold as text (a nested list or
    object) fails the whole call; only then are lines converted one by one, and each failing line rejected whole
    (its events were already counted, so each of them is one reject).
    """
    try:
        return pl.Series("events", events, dtype=_EVENTS, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        pass
    out: list[list[Any] | None] = []
    for no, evs in zip(lines, events, strict=True):
        try:
            pl.Series("events", [evs], dtype=_EVENTS, strict=False)
            out.append(evs)
        except (pl.exceptions.PolarsError, TypeError, ValueError):
            out.append(None)
            for _ in evs:
                log.add(Reject(str(path), no, "events", "events", "an event field holds a list or object",
                               str(evs)[:500]))
    return pl.Series("events", out, dtype=_EVENTS, strict=False)
