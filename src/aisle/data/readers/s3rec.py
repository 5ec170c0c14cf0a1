"""S3-Rec / ICLRec sequence files: one line per user, `user_id item_id item_id ...` in time order.

Each line is a user's reviewed products (a review implies a purchase, so events are `purchase`).
The format has no timestamps, only order: an event's timestamp is its position in the user's sequence,
in seconds after the Unix epoch, so ordering by time reproduces the file's order (a global temporal
split on such data is meaningless; use leave-one-out). If `<stem>_item2attributes.json` sits beside
the file (or `?attributes=PATH` names one), its attribute ids become the items' `attribute_ids`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.textio import iter_lines
from aisle.data.validation import LINE, Reject, RejectLog, validate_events, validate_items


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    users: list[str] = []
    items: list[str] = []
    positions: list[int] = []
    lines: list[int] = []
    for no, text in iter_lines(path, encoding=options.get("encoding", "utf-8"), log=log, table="events"):
        tokens = text.split()
        if not tokens:
            continue
        user, seq = tokens[0], tokens[1:]
        if not seq:  # a user with no items holds no events: nothing to load, nothing lost
            continue
        log.seen("events", len(seq))
        bad = next((t for t in seq if not t.isalnum()), None)
        if bad is not None:
            for _ in seq:  # the whole line is suspect: reject each of its events, naming the bad token
                log.add(Reject(str(path), no, "events", "item_id", f"bad item id {bad!r}", text[:500]))
            continue
        users.extend([user] * len(seq))
        items.extend(seq)
        positions.extend(range(len(seq)))
        lines.extend([no] * len(seq))
    raw = pl.DataFrame({
        "user_id": pl.Series(users, dtype=pl.String),
        "item_id": pl.Series(items, dtype=pl.String),
        "timestamp": pl.Series(positions, dtype=pl.Int64),
        LINE: pl.Series(lines, dtype=pl.Int64),
    }).with_columns(pl.lit("purchase").alias("event_type"))
    events = validate_events(raw, file=str(path), log=log, ts_unit="s")
    data = Dataset(name=path.stem, events=events, log=log)
    attr_path = Path(options.get("attributes", path.with_name(f"{path.stem}_item2attributes.json")))
    if attr_path.exists():
        data.items = _read_attributes(attr_path, log)
    return data


def _read_attributes(path: Path, log: RejectLog) -> pl.DataFrame:
    """`{item_id: [attribute ids]}` -> items with `{"attribute_ids": [...]}` attributes (ids only, no names)."""
    mapping = json.loads(path.read_text(encoding="utf-8"))
    log.seen("items", len(mapping))
    raw = pl.DataFrame({
        "item_id": pl.Series(list(mapping.keys()), dtype=pl.String),
        "attributes": pl.Series([json.dumps({"attribute_ids": v}) for v in mapping.values()], dtype=pl.String),
    })
    return validate_items(raw, file=str(path), log=log)
