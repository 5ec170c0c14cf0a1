"""`store:PATH` or `store:postgresql://...`: an Aisle store (what `aisle ingest` and `aisle serve --store` write)
as a source.

So the events the API stored reach training and evaluation without an export: `aisle train store:shop.duckdb`,
`aisle train store:postgresql://aisle@db-host/shop`. It reads through the public store interface only
(`StoreBackend.read_dataset`), so both backends read the same way. The store is opened read-only. A DuckDB file
held open for writing by a server must be stopped first (DuckDB allows one writer process), or the store exported
with `aisle export`; a PostgreSQL store is read while servers keep writing to it (one consistent snapshot of all
three tables).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aisle.data.readers.base import Dataset
from aisle.data.validation import RejectLog


def read(path: Path | str, options: Mapping[str, str], log: RejectLog) -> Dataset:
    from aisle.store import Store, describe, is_postgres_url

    if options:
        raise ValueError(f"the 'store' format takes no options (got {', '.join(sorted(options))})")
    if is_postgres_url(path):
        return _read_postgres(str(path), log)
    if isinstance(path, str):
        raise ValueError(f"{describe(path)}: the 'store' format reads a DuckDB file or a postgresql:// URL")
    import duckdb

    if path.is_dir():
        raise ValueError(f"{path}: the 'store' format is a DuckDB file written by `aisle ingest --db` (a folder of "
                         "Parquet files is `aisle:`)")
    try:
        with Store(path, read_only=True) as store:
            return store.read_dataset(log=log)
    except duckdb.Error as exc:  # a file that is not a DuckDB store, one locked by a writer, one without tables
        raise ValueError(f"{path}: cannot read this Aisle store: {exc}") from None


def _read_postgres(url: str, log: RejectLog) -> Dataset:
    import psycopg
    import psycopg_pool

    from aisle.store import describe, open_store

    try:
        with open_store(url, read_only=True) as store:
            return store.read_dataset(log=log)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:  # server down, wrong database, no permission
        raise ValueError(f"{describe(url)}: cannot read this Aisle store: {exc}") from None
