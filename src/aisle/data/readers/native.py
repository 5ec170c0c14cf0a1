"""Aisle's own folder format: `items.parquet`, `users.parquet`, `events.parquet` in the canonical schemas.

`aisle generate` writes it and the store exports it; any missing file is simply an empty table. Parquet
has no lines, so a reject's `line` is the 1-based row number.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.validation import RejectLog, validate_events, validate_items, validate_users


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    if not path.is_dir():
        raise ValueError(f"{path}: the 'aisle' format is a folder with items/users/events.parquet")
    data = Dataset(name=path.name, log=log)
    for table, validate in (("items", validate_items), ("users", validate_users), ("events", validate_events)):
        file = path / f"{table}.parquet"
        if not file.exists():
            continue
        raw = pl.read_parquet(file)
        log.seen(table, raw.height)
        setattr(data, table, validate(raw, file=str(file), log=log))
    if not any((path / f"{t}.parquet").exists() for t in ("items", "users", "events")):
        raise ValueError(f"{path}: no items.parquet, users.parquet or events.parquet in this folder")
    return data
