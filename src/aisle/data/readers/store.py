"""`store:PATH`: an Aisle store (the DuckDB file that `aisle ingest` and `aisle serve --store` write) as a source.

So the events the API stored reach training and evaluation without an export: `aisle train store:shop.duckdb`.
It reads through the public `aisle.store.Store` interface only (`Store.read_dataset`), so a store on another
backend reads the same way. The store is opened read-only: a server holding it open for writing must be stopped
first (DuckDB allows one writer process), or the store exported with `aisle export`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aisle.data.readers.base import Dataset
from aisle.data.validation import RejectLog


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    import duckdb

    from aisle.store import Store

    if options:
        raise ValueError(f"the 'store' format takes no options (got {', '.join(sorted(options))})")
    if path.is_dir():
        raise ValueError(f"{path}: the 'store' format is a DuckDB file written by `aisle ingest --db` (a folder of "
                         "Parquet files is `aisle:`)")
    try:
        with Store(path, read_only=True) as store:
            return store.read_dataset(log=log)
    except duckdb.Error as exc:  # a file that is not a DuckDB store, one locked by a writer, one without tables
        raise ValueError(f"{path}: cannot read this Aisle store: {exc}") from None
