"""Diginetica (CIKM Cup 2016) item views: `session_id;user_id;item_id;timeframe;eventdate`, `;`-separated.

PATH is the views file (`train-item-views.csv`, or SR-GNN's `sample_train-item-views.csv`), or a folder holding
one. Both header spellings are accepted (`sessionId;userId;itemId` in the Cup release, snake_case in SR-GNN's
sample); `?encoding=` and `?sep=` override UTF-8 and `;`. Every row is a product page view: a `view` event
with `session_id` set. (The Cup's other files, clicks, purchases, queries and products, are not read here.)

Shopper. Most rows have user_id "NA" (anonymous). The shopper of an anonymous row is the session's logged-in
user when the session names exactly one (a session is one person; views before logging in are theirs),
else the session itself, as user id "session:<session_id>" (prefixed so it cannot collide with a user id).
Rows that name a user keep it; in a session naming two users (it happens) each row stays as the data says
and its anonymous rows stay with the session.

Time. The Cup gives `eventdate` (a date, no time of day) and `timeframe`, the milliseconds since the
session's start (its first query, per the Cup's data description; in SR-GNN's sample every timeframe lies
between 2.7 s and 20 minutes). Sessions that run past midnight carry the next date on their later rows while
the timeframe keeps growing (sample sessions 629 and 2205), so date + timeframe per row would jump a day
ahead mid-session. The timestamp is therefore the session's first date at 00:00 UTC + timeframe: the order inside
a session is exact, across sessions it is right to the day (the true time of day is unknown; UTC is a
convention, the Cup does not say).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.textio import read_delimited
from aisle.data.validation import LINE, TIME, RejectLog, Rule, apply_rules, validate_events

#: header names, lower-cased without underscores -> our columns
COLUMNS = {"sessionid": "session_id", "userid": "user_id", "itemid": "item_id", "timeframe": "timeframe",
           "eventdate": "eventdate"}
ANONYMOUS = ("", "NA")


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    file = _locate(path)
    raw = read_delimited(file, table="events", log=log, sep=options.get("sep", ";"),
                         encoding=options.get("encoding", "utf-8"))
    raw = raw.rename({c: COLUMNS.get(c.lower().replace("_", ""), c) for c in raw.columns if c != LINE})
    missing = [c for c in COLUMNS.values() if c not in raw.columns]
    if missing:
        if raw.height == 0 and raw.columns == [LINE]:  # an empty file: nothing to read
            return Dataset(name=file.stem, log=log)
        raise ValueError(f"{file}: no column {', '.join(missing)} in the header (found "
                         f"{', '.join(c for c in raw.columns if c != LINE)}); expected "
                         "session_id;user_id;item_id;timeframe;eventdate")
    strip = [pl.col(c).str.strip_chars() for c in COLUMNS.values()]
    raw = raw.with_columns(strip).with_columns(
        pl.col("eventdate").str.to_date("%Y-%m-%d", strict=False).alias("_date"),
        pl.col("timeframe").cast(pl.Int64, strict=False).alias("_ms"),
    )
    rules: list[Rule] = [
        ("session_id", pl.col("session_id").is_null(), pl.lit("missing session id")),
        ("timeframe", pl.col("_ms").is_null() | (pl.col("_ms") < 0),
         pl.format("bad timeframe '{}' (expected milliseconds since the session start)", pl.col("timeframe"))),
        ("eventdate", pl.col("_date").is_null(), pl.format("bad date '{}' (expected YYYY-MM-DD)", pl.col("eventdate"))),
    ]
    raw = apply_rules(raw, rules, file=str(file), table="events", log=log)

    session = pl.col("session_id")
    known = pl.when(~pl.col("user_id").is_in(ANONYMOUS)).then(pl.col("user_id"))  # null for "NA"
    session_user = pl.when(known.drop_nulls().n_unique().over(session) == 1).then(
        known.drop_nulls().first().over(session))
    start = pl.col("_date").min().over(session).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(TIME)
    events = raw.select(
        LINE,
        "session_id",
        "item_id",
        pl.coalesce(known, session_user, pl.format("session:{}", session)).alias("user_id"),
        (start + pl.duration(milliseconds=pl.col("_ms"))).alias("timestamp"),
        pl.lit("view").alias("event_type"),
    )
    return Dataset(name=file.stem, events=validate_events(events, file=str(file), log=log), log=log)


def _locate(path: Path) -> Path:
    if not path.is_dir():
        return path
    found = sorted(path.glob("*item-views.csv*"))
    if len(found) != 1:
        raise ValueError(f"{path}: expected one *item-views.csv file in this folder, found {len(found)}")
    return found[0]
