"""The embedded store: one DuckDB file holding the catalog, users and the event log.

DuckDB because the workload is analytical (scan all events to train, aggregate for stats) and it reads
and writes Parquet and Arrow natively, so bulk ingest never goes through Python rows. Events are keyed
by the source's event_id, or by user|item|type|timestamp|query when a format has none; appends skip
keys already present, which makes re-ingesting a file idempotent. Events have no primary-key index on
purpose: an ART index over tens of millions of keys costs gigabytes, while one hash anti-join per
batch costs a scan. The natural key is stored only for events without an id (a second copy of every
id would cost about a fifth of bulk-insert time).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from aisle.data.readers.base import Dataset
from aisle.filelock import file_lock
from aisle.store.base import Appended, Compacted, StoreBackend, StoreStats
from aisle.types import EVENT_SCHEMA, IMPRESSION_SCHEMA, ITEM_SCHEMA, USER_SCHEMA, conform

DEFAULT_DB = Path("aisle-data") / "aisle.duckdb"
SCHEMA_VERSION = "1"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR PRIMARY KEY, title VARCHAR, description VARCHAR, brand VARCHAR, categories VARCHAR[],
    price DOUBLE, currency VARCHAR, available BOOLEAN, attributes VARCHAR, created_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS users (user_id VARCHAR PRIMARY KEY, attributes VARCHAR);
CREATE TABLE IF NOT EXISTS events (
    natural_key VARCHAR, event_id VARCHAR, user_id VARCHAR NOT NULL, item_id VARCHAR,
    event_type VARCHAR NOT NULL, timestamp TIMESTAMPTZ NOT NULL, session_id VARCHAR, value DOUBLE, query VARCHAR,
    request_id VARCHAR
);
-- a store made before events carried the list they answer: the column joins at the end, as in EVENT_SCHEMA
ALTER TABLE events ADD COLUMN IF NOT EXISTS request_id VARCHAR;
CREATE TABLE IF NOT EXISTS impressions (
    request_id VARCHAR NOT NULL, timestamp TIMESTAMPTZ NOT NULL, user_id VARCHAR, session_id VARCHAR,
    surface VARCHAR NOT NULL, item_id VARCHAR NOT NULL, position INTEGER NOT NULL, score DOUBLE, propensity DOUBLE,
    model_version VARCHAR, arm VARCHAR, query VARCHAR
);
"""
# The insertion sequence behind `read_events_since`: a persistent SEQUENCE (never reused, even after an erasure
# deletes the newest rows), added to a store written before it existed by numbering its rows in stored order.
_SEQ_DDL = """
CREATE SEQUENCE IF NOT EXISTS event_seq START {start};
ALTER TABLE events ALTER COLUMN seq SET DEFAULT nextval('event_seq');
"""

_EVENT_COLS = ", ".join(f'"{c}"' for c in EVENT_SCHEMA)
_IMPRESSION_COLS = ", ".join(f'"{c}"' for c in IMPRESSION_SCHEMA)
_NATURAL = ("CASE WHEN event_id IS NULL THEN concat_ws('|', user_id, coalesce(item_id, ''), event_type, "
            "CAST(epoch_us(timestamp) AS VARCHAR), coalesce(query, '')) END")
_KEY = f"coalesce(event_id, {_NATURAL})"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(str(path) + ".wal")) if p.exists())


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def store_lock(path: str | Path) -> contextlib.AbstractContextManager[None]:
    """Exclusive use of a DuckDB store file across processes (servers' writers, `aisle consume`, the worker,
    `aisle compact`): DuckDB allows one writing process at a time and fails the second; this makes it wait."""
    return file_lock(str(path) + ".lock")


class Store(StoreBackend):
    """Catalog, users and events in one DuckDB file (or `:memory:`). Use as a context manager."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, read_only: bool = False, threads: int | None = None) -> None:
        """`threads`: DuckDB's worker threads for this connection (default: one per core); a background writer
        beside a server takes 1, so a write never takes every core from the requests at once."""
        self.path = str(path)
        if self.path != ":memory:":
            if read_only and not Path(self.path).exists():
                raise FileNotFoundError(f"{self.path}: no Aisle store here (create one with `aisle ingest`)")
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(self.path, read_only=read_only, config={"threads": threads} if threads else {})
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")  # Aisle draws its own progress bars
        # The catalog is read through `pragma_table_info` only: a connection's first `information_schema` (or
        # `duckdb_columns()`) query costs ~16 ms of CPU, and a stream consumer opens the store for every round
        # (benchmarks/RESULTS.md, "The consumer's CPU per impression").
        if not read_only:
            self.con.execute(_DDL)
            self._add_positions()
            if self._stored_version() != SCHEMA_VERSION:  # a write per open made every close checkpoint
                self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        # a file made by an older Aisle and opened read-only cannot be migrated: read what it lacks as nulls
        columns = self._columns("events")
        self._event_cols = ", ".join(f'"{c}"' if c in columns or not columns else f'NULL AS "{c}"'
                                     for c in EVENT_SCHEMA)
        self._has_impressions = not read_only or bool(self._columns("impressions"))

    def _columns(self, table: str) -> set[str]:
        """The column names of `table`; empty when there is no such table. `pragma_table_info`, not
        information_schema: a stream consumer opens the store every round (benchmarks/events_store_rounds.py)."""
        try:
            return {r[0] for r in self.con.execute("SELECT name FROM pragma_table_info(?)", [table]).fetchall()}
        except duckdb.CatalogException:
            return set()

    def _stored_version(self) -> str | None:
        got = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if got is None else str(got[0])

    def _add_positions(self) -> None:
        """Give every event its insertion number (`seq`); a store made before positions existed gets them here."""
        if self._has_positions():
            return
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute("ALTER TABLE events ADD COLUMN seq BIGINT")
            self.con.execute("UPDATE events SET seq = rowid + 1")
            start = self._scalar("SELECT coalesce(max(seq), 0) + 1 FROM events")
            self.con.execute(_SEQ_DDL.format(start=start))
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def _has_positions(self) -> bool:
        return "seq" in self._columns("events")

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writes -----------------------------------------------------------------------------------

    def append_events(self, events: pl.DataFrame, *, fresh: bool = False) -> Appended:
        """Append events, skipping any whose key is already stored or repeated earlier in the batch. `fresh`: only
        stored events inside the batch's time span are compared (see `StoreBackend.append_events`); DuckDB's
        per-row-group min/max of `timestamp` skips the rest of the table, so the check costs the same at 10 million
        stored events as at none, where comparing against every stored key grows with the table."""
        batch = conform(events, EVENT_SCHEMA).to_arrow()
        before = self._count("events")
        self.con.register("_batch", batch)
        try:
            span = self._span() if fresh and before > 0 else None
            self._insert_batch(dedupe=self._has_repeats(), against_store=before > 0, span=span)
        finally:
            self.con.unregister("_batch")
        return Appended(offered=batch.num_rows, inserted=self._count("events") - before)

    def _span(self) -> tuple[int, int] | None:
        """The registered `_batch`'s first and last event time (epoch microseconds); None when it is empty."""
        first, last = self.con.execute("SELECT epoch_us(min(timestamp)), epoch_us(max(timestamp)) FROM _batch"
                                       ).fetchall()[0]
        return None if first is None else (int(first), int(last))

    def _has_repeats(self) -> bool:
        # a window dedupe costs ~3x a distinct count, and logs rarely repeat themselves: check first
        return self._scalar(f"SELECT count(*) - count(DISTINCT {_KEY}) FROM _batch") > 0

    def _insert_batch(self, *, dedupe: bool, against_store: bool, span: tuple[int, int] | None = None) -> None:
        """INSERT the registered `_batch`; the anti-join against stored keys runs only when the store has events
        (its cost grows with the table, so a first bulk load into an empty store skips it). With `span` (first, last
        epoch microseconds) it compares only the stored events of that time span: a constant filter on `timestamp`,
        which DuckDB checks against each row group's min/max before reading it."""
        first = "QUALIFY row_number() OVER (PARTITION BY event_key) = 1" if dedupe else ""
        stored = "events"
        if span is not None:
            stored = (f"(SELECT event_id, natural_key FROM events WHERE timestamp BETWEEN make_timestamptz({span[0]}) "
                      f"AND make_timestamptz({span[1]}))")
        anti = f"ANTI JOIN {stored} e ON coalesce(e.event_id, e.natural_key) = b.event_key" if against_store else ""
        self.con.execute(f"""
            INSERT INTO events (natural_key, {_EVENT_COLS})
            SELECT b.* EXCLUDE (event_key) FROM (
                SELECT {_KEY} AS event_key, {_NATURAL} AS natural_key, {_EVENT_COLS} FROM _batch {first}
            ) b {anti}
        """)

    def upsert_items(self, items: pl.DataFrame) -> int:
        """Insert new items and replace existing ones (same item_id); the last row of a repeated id wins."""
        return self._upsert("items", conform(items, ITEM_SCHEMA), "item_id")

    def upsert_users(self, users: pl.DataFrame) -> int:
        return self._upsert("users", conform(users, USER_SCHEMA), "user_id")

    def _upsert(self, table: str, frame: pl.DataFrame, key: str) -> int:
        if frame.is_empty():
            return 0
        frame = frame.unique(subset=[key], keep="last", maintain_order=True)
        self.con.register("_batch", frame.to_arrow())
        try:
            cols = ", ".join(f'"{c}"' for c in frame.columns)
            self.con.execute(f"INSERT OR REPLACE INTO {table} ({cols}) SELECT {cols} FROM _batch")
        finally:
            self.con.unregister("_batch")
        return frame.height

    def ingest(self, data: Dataset, *, progress: Callable[[int], None] | None = None,
               batch_rows: int = 2_000_000) -> dict[str, Appended]:
        """Store a validated Dataset: items and users upserted, events appended in batches (idempotent)."""
        out = {"items": Appended(data.items.height, self.upsert_items(data.items)),
               "users": Appended(data.users.height, self.upsert_users(data.users))}
        events = conform(data.events, EVENT_SCHEMA).to_arrow()  # once; batches are zero-copy slices
        before = self._count("events")
        self.con.execute("BEGIN TRANSACTION")
        try:
            # One duplicate check over the whole log, then batches: into an empty store a repeat-free log is a
            # plain bulk insert; otherwise every batch is anti-joined against what is stored (earlier batches
            # included, so a repeat across batches is caught too).
            self.con.register("_batch", events)
            try:
                repeats = self._has_repeats()
            finally:
                self.con.unregister("_batch")
            for start in range(0, events.num_rows, batch_rows):
                chunk = events.slice(start, batch_rows)
                self.con.register("_batch", chunk)
                try:
                    self._insert_batch(dedupe=repeats, against_store=before > 0 or (repeats and start > 0))
                finally:
                    self.con.unregister("_batch")
                if progress:
                    progress(chunk.num_rows)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        offered, inserted = events.num_rows, self._count("events") - before
        out["events"] = Appended(offered, inserted)
        return out

    def delete_user(self, user_id: str) -> int:
        """Erase a user: every event of theirs and their profile. Returns the number of events deleted."""
        n = self._scalar("SELECT count(*) FROM events WHERE user_id = ?", [user_id])
        self.con.execute("DELETE FROM events WHERE user_id = ?", [user_id])
        self.con.execute("DELETE FROM users WHERE user_id = ?", [user_id])
        self.con.execute("DELETE FROM impressions WHERE user_id = ?", [user_id])
        return int(n)

    def compact(self) -> Compacted:
        """Rewrite the file with only its live rows: DuckDB's DELETE and VACUUM leave deleted rows' bytes in the
        file's blocks (a raw read of the file still finds an erased user's id), so the whole database is copied
        into a new file (`COPY FROM DATABASE`: schema, keys and rows), synced, and renamed over the old one. The
        caller holds the store's file lock (`file_lock`), so no other process has the file open meanwhile."""
        t0 = time.perf_counter()
        if self.path == ":memory:":
            return Compacted(0, 0, 0.0)
        path, tmp = Path(self.path), Path(self.path + ".compacting")
        self.con.execute("CHECKPOINT")
        self.con.close()
        before = _size(path)
        tmp.unlink(missing_ok=True)
        try:
            con = duckdb.connect(":memory:")
            try:
                con.execute(f"ATTACH '{_quote(path)}' AS src (READ_ONLY)")
                con.execute(f"ATTACH '{_quote(tmp)}' AS dst")
                con.execute("COPY FROM DATABASE src TO dst")
                con.execute("DETACH dst")
                con.execute("DETACH src")
            finally:
                con.close()
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            tmp.replace(path)
            Path(str(path) + ".wal").unlink(missing_ok=True)  # checkpointed above: nothing is pending in it
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            tmp.unlink(missing_ok=True)
            self.con = duckdb.connect(self.path)
            self.con.execute("SET TimeZone = 'UTC'")
            self.con.execute("SET enable_progress_bar = false")
        return Compacted(before, _size(path), time.perf_counter() - t0)

    def append_impressions(self, impressions: pl.DataFrame) -> Appended:
        """Append impression rows, skipping a (request_id, position) already stored or repeated in the batch (a
        stream entry delivered twice). Only stored rows at or after the batch's first timestamp are compared: the
        log is appended in time order, and a constant bound lets DuckDB's min/max block statistics skip the rest of
        the table. A batch rarely repeats itself, so the window that keeps one row of each key runs only when polars
        finds a repeat (it cost a third of the insert), and the rows inserted are the INSERT's own count (no
        count of the table before and after)."""
        batch = conform(impressions, IMPRESSION_SCHEMA)
        if batch.is_empty():
            return Appended(0, 0)
        first = batch["timestamp"].dt.epoch("us").min()
        repeats = batch.select(pl.struct("request_id", "position").is_duplicated().any()).item()
        self.con.register("_imp", batch.to_arrow())
        try:
            inserted = self._scalar(f"""
                INSERT INTO impressions
                SELECT {_IMPRESSION_COLS} FROM _imp b
                ANTI JOIN (SELECT request_id, position FROM impressions
                           WHERE timestamp >= make_timestamptz({int(first)})) s
                       ON s.request_id = b.request_id AND s.position = b.position
                {"QUALIFY row_number() OVER (PARTITION BY b.request_id, b.position) = 1" if repeats else ""}
            """)
        finally:
            self.con.unregister("_imp")
        return Appended(offered=batch.height, inserted=inserted)

    # ---- reads ------------------------------------------------------------------------------------

    def events(self, where: str = "", params: list[Any] | None = None) -> pl.DataFrame:
        """Events in time order per user, EVENT_SCHEMA columns (optionally filtered by a SQL predicate)."""
        sql = (f"SELECT {self._event_cols} FROM events {('WHERE ' + where) if where else ''} "
               "ORDER BY user_id, timestamp")
        return conform(self.con.sql(sql, params=params or None).pl(), EVENT_SCHEMA)

    def read_events_since(self, watermark: int) -> tuple[pl.DataFrame, int]:
        """Events inserted after `watermark` (an insertion number; 0 = from the start), in time order per user,
        and the watermark to pass next time. The file has one writer at a time, so numbers are handed out in
        commit order and nothing below the returned watermark can still appear."""
        if not self._has_positions():
            raise RuntimeError(f"{self.path}: this store predates insertion positions; open it once for writing "
                               "(e.g. `aisle stats --db ...` after `aisle ingest`) to add them")
        frame = self.con.sql(f"SELECT {_EVENT_COLS}, seq FROM events WHERE seq > ? ORDER BY user_id, timestamp",
                             params=[int(watermark)]).pl()
        top = int(frame["seq"].max()) if frame.height else int(watermark)  # type: ignore[arg-type]
        return conform(frame.drop("seq"), EVENT_SCHEMA), max(top, int(watermark))

    def impressions(self, *, since_us: int | None = None) -> pl.DataFrame:
        if not self._has_impressions:
            return pl.DataFrame(schema=IMPRESSION_SCHEMA)
        where = "WHERE epoch_us(timestamp) > ?" if since_us is not None else ""
        sql = f"SELECT {_IMPRESSION_COLS} FROM impressions {where} ORDER BY timestamp, request_id, position"
        return conform(self.con.sql(sql, params=[int(since_us)] if since_us is not None else None).pl(),
                       IMPRESSION_SCHEMA)

    def items(self) -> pl.DataFrame:
        return conform(self.con.sql("SELECT * FROM items ORDER BY item_id").pl(), ITEM_SCHEMA)

    def users(self) -> pl.DataFrame:
        return conform(self.con.sql("SELECT * FROM users ORDER BY user_id").pl(), USER_SCHEMA)

    def export_parquet(self, out_dir: str | Path) -> dict[str, Path]:
        """Write items/users/events.parquet (the `aisle` folder format, readable by `aisle:DIR`), by DuckDB's own
        Parquet writer."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        queries = {
            "items": "SELECT * FROM items ORDER BY item_id",
            "users": "SELECT * FROM users ORDER BY user_id",
            "events": f"SELECT {self._event_cols} FROM events ORDER BY user_id, timestamp",
        }
        if self._has_impressions:
            queries["impressions"] = (f"SELECT {_IMPRESSION_COLS} FROM impressions "
                                      "ORDER BY timestamp, request_id, position")
        else:  # an older file opened read-only: an empty log, so every export has the same files
            self.impressions().write_parquet(out / "impressions.parquet")
        paths = {} if self._has_impressions else {"impressions": out / "impressions.parquet"}
        for table, sql in queries.items():
            paths[table] = out / f"{table}.parquet"
            self.con.execute(f"COPY ({sql}) TO '{_sql_path(paths[table])}' (FORMAT parquet)")
        return paths

    def stats(self) -> StoreStats:
        q = self.con.execute
        by_type = dict(q("SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC").fetchall())
        # .pl(), not fetchall(): Python datetimes with a time zone would need pytz
        first, last = self.con.sql("SELECT min(timestamp), max(timestamp) FROM events").pl().row(0)
        users = self._scalar("SELECT count(*) FROM (SELECT user_id FROM events UNION SELECT user_id FROM users)")
        items = self._scalar("""SELECT count(*) FROM (SELECT item_id FROM events WHERE item_id IS NOT NULL
                                UNION SELECT item_id FROM items)""")
        pairs = self._scalar("""SELECT count(*) FROM (SELECT DISTINCT user_id, item_id FROM events
                                WHERE item_id IS NOT NULL)""")
        return StoreStats(users=users, items=items, catalog_items=self._count("items"), events=sum(by_type.values()),
                          events_by_type=by_type, first_event=first, last_event=last, interactions=pairs)

    def _count(self, table: str) -> int:
        return self._scalar(f"SELECT count(*) FROM {table}")

    def _scalar(self, sql: str, params: list[Any] | None = None) -> int:
        # fetchall, not fetchone: DuckDB keeps a half-read result open and refuses the next statement
        return int(self.con.execute(sql, params or []).fetchall()[0][0])


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
