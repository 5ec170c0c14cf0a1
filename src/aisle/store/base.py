"""What every store backend implements (`StoreBackend`), the results it returns, and `open_store`.

Two backends: DuckDB (`aisle.store.embedded.Store`, one file, the embedded default) and PostgreSQL
(`aisle.store.postgres.PostgresStore`, a server every process and host can reach). Both keep the same three
tables (items, users, events) with the same semantics, so everything above this interface (ingest, stats,
export, `store:` reading for training, the server's event sink) works on either; the contract tests
(tests/contract/test_store.py) hold both to it.

Event identity is the same everywhere: the source's event_id, or for an event without one the natural key
user|item|type|timestamp (microseconds since the epoch)|query. Appending skips keys already stored and repeats
inside the batch, so re-ingesting a file, or re-sending a batch, stores nothing twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.validation import RejectLog

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True, slots=True)
class Appended:
    """Result of an append: rows offered, rows new to the store, and rows already there (or repeated)."""

    offered: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.offered - self.inserted


@dataclass(frozen=True, slots=True)
class StoreStats:
    users: int
    items: int
    catalog_items: int
    events: int
    events_by_type: dict[str, int]
    first_event: Any
    last_event: Any
    interactions: int
    """Distinct (user, item) pairs: the non-zeros of the interaction matrix."""

    @property
    def density(self) -> float:
        cells = self.users * self.items
        return self.interactions / cells if cells else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "users": self.users, "items": self.items, "catalog_items": self.catalog_items, "events": self.events,
            "events_by_type": self.events_by_type,
            "first_event": self.first_event.isoformat() if self.first_event else None,
            "last_event": self.last_event.isoformat() if self.last_event else None,
            "interactions": self.interactions, "density": self.density,
        }


@dataclass(frozen=True)
class Compacted:
    """What a compaction did: the store's size on disk before and after, in bytes, and the seconds it took."""

    before_bytes: int
    after_bytes: int
    seconds: float


class StoreBackend(ABC):
    """Catalog, users and the event log of one shop. Use as a context manager (or call `close`)."""

    name: str
    """Short name of this store (the DuckDB file's stem, the PostgreSQL database's name): a Dataset's name."""

    # ---- writes -----------------------------------------------------------------------------------

    @abstractmethod
    def append_events(self, events: pl.DataFrame, *, fresh: bool = False) -> Appended:
        """Append events, skipping any whose key is already stored or repeated earlier in the batch.

        `fresh=True` is the caller's word that any copy of these events the store may already hold has the same
        timestamp (so the same key and time): then a backend may look for duplicates among the stored events of
        the batch's time span only, a cost that does not grow with the table. The stream consumer says it for
        entries read for the first time: an event reaches the stream only when the API's duplicate-detection key
        for it was absent (a re-send of the same event has the same key and, for an event without an id, the key
        includes the time). It does not say it for a redelivered entry, whose events a dead consumer may have
        committed (those get the full check). DuckDB uses it; PostgreSQL's unique index makes every check cheap
        and ignores it."""

    @abstractmethod
    def upsert_items(self, items: pl.DataFrame) -> int:
        """Insert new items and replace existing ones (same item_id); the last row of a repeated id wins.
        Returns the number of distinct items written."""

    @abstractmethod
    def upsert_users(self, users: pl.DataFrame) -> int:
        """As `upsert_items`, keyed by user_id."""

    @abstractmethod
    def ingest(self, data: Dataset, *, progress: Callable[[int], None] | None = None,
               batch_rows: int = 2_000_000) -> dict[str, Appended]:
        """Store a validated Dataset: items and users upserted, events appended in batches (idempotent), in one
        transaction. Returns an `Appended` per table."""

    @abstractmethod
    def delete_user(self, user_id: str) -> int:
        """Erase a user: every event of theirs, every impression shown to them, and their profile. Returns the
        number of events deleted."""

    @abstractmethod
    def append_impressions(self, impressions: pl.DataFrame) -> Appended:
        """Append impression rows (IMPRESSION_SCHEMA, one per shown item), skipping a (request_id, position)
        already stored or repeated in the batch, so a redelivered batch stores nothing twice."""

    @abstractmethod
    def compact(self) -> Compacted:
        """Rewrite the store's files so the bytes of deleted rows (erased users) leave them. A delete only marks
        rows: DuckDB keeps them in the file's blocks and PostgreSQL in dead tuples until this runs. Takes the store
        exclusively for its duration (DuckDB: rewrites the file; PostgreSQL: VACUUM FULL locks each table)."""

    # ---- reads ------------------------------------------------------------------------------------

    @abstractmethod
    def events(self) -> pl.DataFrame:
        """All events in EVENT_SCHEMA columns, ordered by user, then time."""

    @abstractmethod
    def read_events_since(self, watermark: int) -> tuple[pl.DataFrame, int]:
        """The events stored after `watermark` (EVENT_SCHEMA, ordered by user then time) and the watermark to pass
        next time: what `aisle worker` folds into the served bundle without reading the whole log.

        A watermark is the store's insertion position (0 = before the first event), not an event time: an event
        posted late with an old timestamp is still read once, by the next call. Each event is returned by exactly
        one call in a chain of calls, even while writers append (no loss, no repeat); an erased user's events are
        gone from later calls. DuckDB counts inserted rows; PostgreSQL uses transaction ids (see the backends)."""

    @abstractmethod
    def items(self) -> pl.DataFrame:
        """The catalog in ITEM_SCHEMA columns, ordered by item_id."""

    @abstractmethod
    def users(self) -> pl.DataFrame:
        """User profiles in USER_SCHEMA columns, ordered by user_id."""

    @abstractmethod
    def impressions(self, *, since_us: int | None = None) -> pl.DataFrame:
        """The impression log in IMPRESSION_SCHEMA columns, ordered by time, request, position (empty in a store
        that never had one); with `since_us`, only the rows served after that time (epoch microseconds): what the
        worker's exploration update reads at each refresh."""

    @abstractmethod
    def stats(self) -> StoreStats: ...

    def read_dataset(self, *, log: RejectLog | None = None) -> Dataset:
        """The whole store as a `Dataset` (items, users, events in the canonical schemas): what `aisle train
        store:...` and `aisle evaluate store:...` learn from.

        Rows were validated when they were stored, so nothing is rejected here; every row is counted as seen so
        the reader's accounting (loaded + rejected = total) holds.
        """
        log = log or RejectLog()
        data = Dataset(name=self.name, log=log, items=self.items(), users=self.users(), events=self.events())
        for table in ("items", "users", "events"):
            log.seen(table, data.loaded(table))
        return data

    def export_parquet(self, out_dir: str | Path) -> dict[str, Path]:
        """Write items/users/events.parquet (the `aisle` folder format, readable by `aisle:DIR`) and
        impressions.parquet (the impression log, which `aisle:` reading leaves aside)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for table, frame in (("items", self.items()), ("users", self.users()), ("events", self.events()),
                             ("impressions", self.impressions())):
            paths[table] = out / f"{table}.parquet"
            frame.write_parquet(paths[table])
        return paths

    # ---- lifetime ---------------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> StoreBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def open_store(target: str | Path, *, read_only: bool = False) -> StoreBackend:
    """The store at `target`: a `postgresql://` (or `postgres://`) URL is a PostgreSQL store; anything else is a
    DuckDB file path (optionally written `duckdb:PATH`), the embedded default.

    `read_only`: DuckDB opens the file read-only (several readers may share it; it must exist); PostgreSQL runs
    every transaction read-only and creates no schema (the tables must exist: `aisle ingest` creates them).
    """
    text = str(target)
    if is_postgres_url(text):
        from aisle.store.postgres import PostgresStore

        return PostgresStore(text, read_only=read_only)
    from aisle.store.embedded import Store

    if text.startswith("duckdb:"):
        text = text.removeprefix("duckdb:")
    return Store(text, read_only=read_only)


def describe(target: str | Path) -> str:
    """`target` for messages: a PostgreSQL URL without its password."""
    text = str(target)
    if not is_postgres_url(text):
        return text
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(text)
    if parts.password is None:
        return text
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
