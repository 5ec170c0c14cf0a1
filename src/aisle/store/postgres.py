"""The PostgreSQL store: catalog, users and the event log in a PostgreSQL database that every process and host
can reach (`aisle ingest --db postgresql://...`, `aisle serve --store postgresql://...`, `store:postgresql://...`).

Same tables and semantics as the DuckDB store (`aisle.store.embedded`), so the two are interchangeable behind
`aisle.store.StoreBackend`. What differs is how identity is kept: DuckDB anti-joins each batch against the
stored keys (one writer process holds the file), while here a unique index on the event key makes appends
idempotent even with many concurrent writers: a batch is `COPY`ed into a per-connection staging table, then
`INSERT ... SELECT ... ON CONFLICT DO NOTHING` keeps only keys neither stored nor repeated earlier in the batch.
Two writers racing on the same key both wait on the index, and exactly one row is stored.

The event key is the one DuckDB uses: the event_id, else the natural key
user|item|type|timestamp-in-microseconds|query. As in DuckDB the natural key is stored only for events without an
id, and ids and natural keys share one key space. The unique index is on the MD5 of the key (16 bytes, as a
uuid), not the key itself: a natural key holds the search query, and a B-tree entry may not exceed ~2.7 kB, so an
index on the text would refuse an event with a long query or id (and would be larger). Two different keys with the
same MD5 would be taken for one event; by accident that is a 2^-128 chance per pair, and by design it needs a
second preimage of a key already stored, which nobody can compute. Id columns use the "C" collation, so reads come
back in the same byte order as from DuckDB.

Bulk data never goes through Python rows: writes are CSV produced by Polars and streamed by `COPY FROM STDIN`;
reads are `COPY (SELECT ...) TO STDOUT` parsed by Polars. Connections come from a psycopg_pool pool (several
threads of a server may use one store). The schema is created on first use, under an advisory lock so several
processes opening a new database at once do not race; its version is kept in `meta` as in DuckDB.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.validation import RejectLog
from aisle.store.base import Appended, Compacted, StoreBackend, StoreStats, describe
from aisle.types import EVENT_SCHEMA, IMPRESSION_SCHEMA, ITEM_SCHEMA, USER_SCHEMA, conform

SCHEMA_VERSION = "1"
_LOCK_ID = 0x61_69_73_6C_65  # "aisle": the advisory lock that serialises schema creation

log = logging.getLogger("aisle.store")

#: The tables that hold shoppers' rows, rewritten by `compact` (items hold no one's data).
_ERASABLE = ("events", "users", "impressions")

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT COLLATE "C" PRIMARY KEY, title TEXT, description TEXT, brand TEXT, categories TEXT[],
    price DOUBLE PRECISION, currency TEXT, available BOOLEAN, attributes TEXT, created_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS users (user_id TEXT COLLATE "C" PRIMARY KEY, attributes TEXT);
CREATE TABLE IF NOT EXISTS events (
    natural_key TEXT COLLATE "C", event_id TEXT COLLATE "C", user_id TEXT COLLATE "C" NOT NULL,
    item_id TEXT COLLATE "C", event_type TEXT NOT NULL, "timestamp" TIMESTAMPTZ NOT NULL, session_id TEXT,
    value DOUBLE PRECISION, query TEXT, request_id TEXT COLLATE "C"
);
-- a store made before events carried the list they answer: the column joins at the end, as in EVENT_SCHEMA
ALTER TABLE events ADD COLUMN IF NOT EXISTS request_id TEXT COLLATE "C";
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events ((md5(coalesce(event_id, natural_key))::uuid));
CREATE INDEX IF NOT EXISTS events_user ON events (user_id);
ALTER TABLE events ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS events_xid ON events (xid);
CREATE TABLE IF NOT EXISTS impressions (
    request_id TEXT COLLATE "C" NOT NULL, "timestamp" TIMESTAMPTZ NOT NULL, user_id TEXT COLLATE "C",
    session_id TEXT COLLATE "C", surface TEXT NOT NULL, item_id TEXT COLLATE "C" NOT NULL, position INTEGER NOT NULL,
    score DOUBLE PRECISION, propensity DOUBLE PRECISION, model_version TEXT, arm TEXT, query TEXT,
    PRIMARY KEY (request_id, position)
);
CREATE INDEX IF NOT EXISTS impressions_user ON impressions (user_id);
"""
# `xid`: the id of the transaction that inserted the event, behind `read_events_since`. Not a sequence: writers run
# concurrently and a sequence number is taken before its transaction commits, so a reader could pass a number whose
# row commits later and lose it. A transaction id below the snapshot's xmin belongs to a finished transaction.

# per-connection staging tables, emptied at every commit
_STAGE = {
    "events": """CREATE TEMP TABLE IF NOT EXISTS _stage_events (
        event_id TEXT COLLATE "C", user_id TEXT COLLATE "C", item_id TEXT COLLATE "C", event_type TEXT,
        "timestamp" TIMESTAMPTZ, session_id TEXT, value DOUBLE PRECISION, query TEXT, request_id TEXT COLLATE "C")
        ON COMMIT DELETE ROWS""",
    "impressions": """CREATE TEMP TABLE IF NOT EXISTS _stage_impressions (
        request_id TEXT COLLATE "C", "timestamp" TIMESTAMPTZ, user_id TEXT COLLATE "C", session_id TEXT COLLATE "C",
        surface TEXT, item_id TEXT COLLATE "C", position INTEGER, score DOUBLE PRECISION, propensity DOUBLE PRECISION,
        model_version TEXT, arm TEXT, query TEXT) ON COMMIT DELETE ROWS""",
    "items": """CREATE TEMP TABLE IF NOT EXISTS _stage_items (
        item_id TEXT COLLATE "C", title TEXT, description TEXT, brand TEXT, categories TEXT, price DOUBLE PRECISION,
        currency TEXT, available BOOLEAN, attributes TEXT, created_at TIMESTAMPTZ) ON COMMIT DELETE ROWS""",
    "users": """CREATE TEMP TABLE IF NOT EXISTS _stage_users (user_id TEXT COLLATE "C", attributes TEXT)
        ON COMMIT DELETE ROWS""",
}

_EVENT_COLS = ", ".join(f'"{c}"' for c in EVENT_SCHEMA)
_EPOCH_US = "(extract(epoch FROM {0}) * 1000000)::bigint"
_TS_US = _EPOCH_US.format('"timestamp"')
_FIRST_US, _LAST_US = _EPOCH_US.format('min("timestamp")'), _EPOCH_US.format('max("timestamp")')
_NATURAL = ("CASE WHEN event_id IS NULL THEN concat_ws('|', user_id, coalesce(item_id, ''), event_type, "
            f"{_TS_US}::text, coalesce(query, '')) END")
_INSERT_EVENTS = f"""
    INSERT INTO events (natural_key, {_EVENT_COLS})
    SELECT {_NATURAL}, {_EVENT_COLS} FROM _stage_events
    ON CONFLICT ((md5(coalesce(event_id, natural_key))::uuid)) DO NOTHING
"""
_IMPRESSION_COLS = ", ".join(f'"{c}"' for c in IMPRESSION_SCHEMA)
_INSERT_IMPRESSIONS = f"""
    INSERT INTO impressions ({_IMPRESSION_COLS}) SELECT {_IMPRESSION_COLS} FROM _stage_impressions
    ON CONFLICT (request_id, position) DO NOTHING
"""
_ITEM_SET = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in ITEM_SCHEMA if c != "item_id")
_UPSERT_ITEMS = f"""
    INSERT INTO items ({", ".join(f'"{c}"' for c in ITEM_SCHEMA)})
    SELECT item_id, title, description, brand,
           CASE WHEN json_typeof(categories::json -> 'c') = 'array' THEN
               ARRAY(SELECT e FROM json_array_elements_text(categories::json -> 'c') WITH ORDINALITY AS x(e, n)
                     ORDER BY n) END,
           price, currency, available, attributes, created_at
    FROM _stage_items
    ON CONFLICT (item_id) DO UPDATE SET {_ITEM_SET}
"""
_UPSERT_USERS = """
    INSERT INTO users (user_id, attributes) SELECT user_id, attributes FROM _stage_users
    ON CONFLICT (user_id) DO UPDATE SET attributes = EXCLUDED.attributes
"""
_COPY_ROWS = 200_000  # rows per CSV chunk streamed into COPY (bounds the client's memory, not the batch)


def _csv_times(frame: pl.DataFrame, *cols: str) -> pl.DataFrame:
    """Timestamps as ISO text with an explicit UTC zone: exact to the microsecond whatever the session zone."""
    return frame.with_columns(pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ") for c in cols)


def _to_csv(frame: pl.DataFrame) -> Iterator[bytes]:
    """CSV for `COPY ... (FORMAT csv)`: a null is an empty field, an empty string a quoted "" (as PostgreSQL reads
    them); every string is quoted, so no value can be taken for COPY's end-of-data marker."""
    for start in range(0, max(frame.height, 1), _COPY_ROWS):
        buf = io.BytesIO()
        frame.slice(start, _COPY_ROWS).write_csv(buf, include_header=False, quote_style="non_numeric")
        yield buf.getvalue()


def _from_epoch_us(value: int | None) -> datetime | None:
    return None if value is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))


class PostgresStore(StoreBackend):
    """Catalog, users and events in a PostgreSQL database. Use as a context manager (closes the pool)."""

    def __init__(self, url: str, *, read_only: bool = False, pool_size: int = 4, connect_timeout: float = 10.0
                 ) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg_pool import ConnectionPool

        self.url = url
        self.path = describe(url)  # what messages show: the URL without its password
        self.read_only = read_only
        self.name = str(conninfo_to_dict(url).get("dbname") or "postgres")
        self._snapshot = threading.local()  # .con: the connection this thread's read_dataset reads its snapshot on
        # one plain connection first: a wrong URL or a server that is down fails here with the driver's reason
        # (a pool would only time out), and the schema is created or checked before any pooled work
        with psycopg.connect(url, connect_timeout=int(connect_timeout)) as con:
            self._prepare(con)

        def configure(con: Any) -> None:
            con.read_only = read_only

        self._pool = ConnectionPool(url, min_size=1, max_size=max(1, pool_size), configure=configure, open=True,
                                    timeout=connect_timeout, name="aisle-store")

    def _prepare(self, con: Any) -> None:
        if self.read_only:
            found = con.execute("SELECT to_regclass('events') IS NOT NULL AND to_regclass('meta') IS NOT NULL"
                                ).fetchone()[0]
            if not found:
                raise FileNotFoundError(f"{self.path}: no Aisle store here (create one with `aisle ingest --db "
                                        f"{self.path} ...`)")
        else:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
                con.execute(_DDL)
                stored = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if stored is None:
                    con.execute("INSERT INTO meta VALUES ('schema_version', %s)", [SCHEMA_VERSION])
        # a database made by an older Aisle and opened read-only is not migrated: what it lacks reads as nulls
        self._columns = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'events'").fetchall()}
        self._has_impressions = bool(con.execute("SELECT to_regclass('impressions') IS NOT NULL").fetchone()[0])
        stored = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if stored is not None and stored[0] != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: store schema version {stored[0]}; this Aisle reads and writes "
                               f"version {SCHEMA_VERSION}")

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A pooled connection inside one transaction (committed on success, rolled back on an error)."""
        with self._pool.connection() as con:
            yield con

    # ---- writes -----------------------------------------------------------------------------------

    @staticmethod
    def _copy(cur: Any, table: str, frame: pl.DataFrame) -> None:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as copy:
            for chunk in _to_csv(frame):
                copy.write(chunk)

    def _append(self, cur: Any, events: pl.DataFrame) -> int:
        """COPY one batch into the staging table, insert the keys not stored yet; returns the rows inserted."""
        cur.execute(_STAGE["events"])
        cur.execute("TRUNCATE _stage_events")
        self._copy(cur, "_stage_events", _csv_times(events, "timestamp"))
        cur.execute(_INSERT_EVENTS)
        return max(cur.rowcount, 0)

    def append_events(self, events: pl.DataFrame, *, fresh: bool = False) -> Appended:
        """`fresh` changes nothing here: the unique index answers each key in O(log n) whatever the table's size."""
        batch = conform(events, EVENT_SCHEMA)
        if batch.is_empty():
            return Appended(0, 0)
        with self._tx() as con, con.cursor() as cur:
            inserted = self._append(cur, batch)
        return Appended(offered=batch.height, inserted=inserted)

    def upsert_items(self, items: pl.DataFrame) -> int:
        with self._tx() as con, con.cursor() as cur:
            return self._upsert_items(cur, items)

    def upsert_users(self, users: pl.DataFrame) -> int:
        with self._tx() as con, con.cursor() as cur:
            return self._upsert_users(cur, users)

    def _upsert_items(self, cur: Any, items: pl.DataFrame) -> int:
        frame = conform(items, ITEM_SCHEMA).unique(subset=["item_id"], keep="last", maintain_order=True)
        if frame.is_empty():
            return 0
        # a list column has no CSV form: send it as JSON ({"c": [...]} keeps null apart from [])
        staged = _csv_times(frame, "created_at").with_columns(
            pl.struct(c=pl.col("categories")).struct.json_encode().alias("categories"))
        cur.execute(_STAGE["items"])
        cur.execute("TRUNCATE _stage_items")
        self._copy(cur, "_stage_items", staged)
        cur.execute(_UPSERT_ITEMS)
        return frame.height

    def _upsert_users(self, cur: Any, users: pl.DataFrame) -> int:
        frame = conform(users, USER_SCHEMA).unique(subset=["user_id"], keep="last", maintain_order=True)
        if frame.is_empty():
            return 0
        cur.execute(_STAGE["users"])
        cur.execute("TRUNCATE _stage_users")
        self._copy(cur, "_stage_users", frame)
        cur.execute(_UPSERT_USERS)
        return frame.height

    def ingest(self, data: Dataset, *, progress: Callable[[int], None] | None = None,
               batch_rows: int = 2_000_000) -> dict[str, Appended]:
        """Items and users upserted, events appended batch by batch, all in one transaction: a failure stores
        nothing. A repeat across batches is caught by the unique index like a repeat against stored events."""
        events = conform(data.events, EVENT_SCHEMA)
        with self._tx() as con, con.cursor() as cur:
            out = {"items": Appended(data.items.height, self._upsert_items(cur, data.items)),
                   "users": Appended(data.users.height, self._upsert_users(cur, data.users))}
            inserted = 0
            for start in range(0, events.height, batch_rows):
                chunk = events.slice(start, batch_rows)
                inserted += self._append(cur, chunk)
                if progress:
                    progress(chunk.height)
        out["events"] = Appended(events.height, inserted)
        return out

    def delete_user(self, user_id: str) -> int:
        with self._tx() as con:
            n = con.execute("DELETE FROM events WHERE user_id = %s", [user_id]).rowcount
            con.execute("DELETE FROM users WHERE user_id = %s", [user_id])
            con.execute("DELETE FROM impressions WHERE user_id = %s", [user_id])
        return int(n)

    def compact(self) -> Compacted:
        """VACUUM FULL of every table that holds shoppers' rows: each is rewritten into new files with only its live
        rows and the old files are deleted (a plain VACUUM only marks dead tuples reusable; their bytes stay on
        disk until overwritten). Then a CHECKPOINT, so the WAL that still holds the deleted rows can be recycled
        (it is, once `max_wal_size`/`wal_keep_size` allow; archives and backups are outside Aisle's reach: README).
        VACUUM FULL locks each table while it runs: the worker runs this at a quiet hour (README)."""
        t0 = time.perf_counter()
        import psycopg

        tables = list(_ERASABLE)
        size = "SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0) FROM unnest(%s::text[]) AS t"
        with self._pool.connection() as con:
            con.autocommit = True  # VACUUM cannot run inside a transaction block
            try:
                before = int(con.execute(size, [tables]).fetchone()[0])
                for table in tables:
                    con.execute(f"VACUUM FULL {table}")
                try:
                    con.execute("CHECKPOINT")
                except psycopg.errors.InsufficientPrivilege:  # needs superuser or pg_checkpoint (PostgreSQL 15+)
                    log.info("CHECKPOINT after compaction not allowed for this role; the WAL recycles on its own")
                after = int(con.execute(size, [tables]).fetchone()[0])
            finally:
                con.autocommit = False
        return Compacted(before, after, time.perf_counter() - t0)

    def append_impressions(self, impressions: pl.DataFrame) -> Appended:
        """COPY into a staging table, then insert what the (request_id, position) key does not hold yet."""
        batch = conform(impressions, IMPRESSION_SCHEMA)
        if batch.is_empty():
            return Appended(0, 0)
        with self._tx() as con, con.cursor() as cur:
            cur.execute(_STAGE["impressions"])
            cur.execute("TRUNCATE _stage_impressions")
            self._copy(cur, "_stage_impressions", _csv_times(batch, "timestamp"))
            cur.execute(_INSERT_IMPRESSIONS)
            inserted = max(cur.rowcount, 0)
        return Appended(offered=batch.height, inserted=inserted)

    # ---- reads ------------------------------------------------------------------------------------

    def read_dataset(self, *, log: RejectLog | None = None) -> Dataset:
        """As `StoreBackend.read_dataset`, with the three tables read in one REPEATABLE READ transaction: one
        snapshot of the store, even while servers keep appending and erasing."""
        log = log or RejectLog()
        with self._tx() as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._snapshot.con = con
            try:
                data = Dataset(name=self.name, log=log, items=self.items(), users=self.users(), events=self.events())
            finally:
                self._snapshot.con = None
        for table in ("items", "users", "events"):
            log.seen(table, data.loaded(table))
        return data

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """The connection of the snapshot this thread is reading (`read_dataset`), else a pooled one for this read
        alone."""
        con = getattr(self._snapshot, "con", None)
        if con is not None:
            yield con
        else:
            with self._tx() as con:
                yield con

    def _read(self, sql: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """`COPY (sql) TO STDOUT` as CSV, parsed by Polars with `schema` (column names and types, in order)."""
        buf = io.BytesIO()
        with self._reading() as con, con.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
            for block in copy:
                buf.write(block)
        if not buf.tell():
            return pl.DataFrame(schema=schema)
        buf.seek(0)
        return pl.read_csv(buf, has_header=False, schema=schema, quote_char='"')

    def events(self) -> pl.DataFrame:
        cols = [_EPOCH_US.format('"timestamp"') if c == "timestamp" else f'"{c}"' if c in self._columns
                else f'NULL AS "{c}"' for c in EVENT_SCHEMA]
        raw = self._read(f"SELECT {', '.join(cols)} FROM events ORDER BY user_id, \"timestamp\"",
                         {**EVENT_SCHEMA, "timestamp": pl.Int64()})
        return conform(raw.with_columns(pl.from_epoch("timestamp", "us").dt.replace_time_zone("UTC")), EVENT_SCHEMA)

    def read_events_since(self, watermark: int) -> tuple[pl.DataFrame, int]:
        """Events committed by transactions in [watermark, the oldest transaction still running), in time order
        per user, and that bound as the next watermark: every transaction below it has finished, so no event can
        still appear below it, and one still running is read next time (one REPEATABLE READ snapshot)."""
        cols = [f'"{c}"' if c != "timestamp" else _TS_US for c in EVENT_SCHEMA]
        with self._tx() as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            horizon = int(con.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()[0])
            self._snapshot.con = con
            try:
                raw = self._read(f"SELECT {', '.join(cols)} FROM events WHERE xid >= '{int(watermark)}'::xid8 "
                                 f"AND xid < '{horizon}'::xid8 ORDER BY user_id, \"timestamp\"",
                                 {**EVENT_SCHEMA, "timestamp": pl.Int64()})
            finally:
                self._snapshot.con = None
        events = raw.with_columns(pl.from_epoch("timestamp", "us").dt.replace_time_zone("UTC"))
        return conform(events, EVENT_SCHEMA), max(horizon, int(watermark))

    def items(self) -> pl.DataFrame:
        cols = {"categories": "array_to_json(categories)::text", "created_at": _EPOCH_US.format("created_at"),
                "available": "available::int"}
        sql = ", ".join(cols.get(c, f'"{c}"') for c in ITEM_SCHEMA)
        raw = self._read(f"SELECT {sql} FROM items ORDER BY item_id",
                         {**ITEM_SCHEMA, "categories": pl.String(), "available": pl.Int8(),
                          "created_at": pl.Int64()})
        return conform(raw.with_columns(
            pl.col("categories").str.json_decode(pl.List(pl.String())),
            pl.col("available").cast(pl.Boolean()),
            pl.from_epoch("created_at", "us").dt.replace_time_zone("UTC")), ITEM_SCHEMA)

    def impressions(self, *, since_us: int | None = None) -> pl.DataFrame:
        if not self._has_impressions:
            return pl.DataFrame(schema=IMPRESSION_SCHEMA)
        cols = [f'"{c}"' if c != "timestamp" else _EPOCH_US.format('"timestamp"') for c in IMPRESSION_SCHEMA]
        where = f"WHERE {_TS_US} > {int(since_us)}" if since_us is not None else ""
        raw = self._read(f"SELECT {', '.join(cols)} FROM impressions {where} ORDER BY \"timestamp\", request_id, "
                         "position", {**IMPRESSION_SCHEMA, "timestamp": pl.Int64()})
        return conform(raw.with_columns(pl.from_epoch("timestamp", "us").dt.replace_time_zone("UTC")),
                       IMPRESSION_SCHEMA)

    def users(self) -> pl.DataFrame:
        return conform(self._read("SELECT user_id, attributes FROM users ORDER BY user_id", dict(USER_SCHEMA)),
                       USER_SCHEMA)

    def stats(self) -> StoreStats:
        with self._tx() as con:
            q = con.execute
            by_type = {t: int(n) for t, n in q("SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC")}
            first, last = q(f"SELECT {_FIRST_US}, {_LAST_US} FROM events").fetchone()
            users = q("SELECT count(*) FROM (SELECT user_id FROM events UNION SELECT user_id FROM users) u"
                      ).fetchone()[0]
            items = q("""SELECT count(*) FROM (SELECT item_id FROM events WHERE item_id IS NOT NULL
                         UNION SELECT item_id FROM items) i""").fetchone()[0]
            pairs = q("""SELECT count(*) FROM (SELECT DISTINCT user_id, item_id FROM events
                         WHERE item_id IS NOT NULL) p""").fetchone()[0]
            catalog = q("SELECT count(*) FROM items").fetchone()[0]
        return StoreStats(users=int(users), items=int(items), catalog_items=int(catalog), events=sum(by_type.values()),
                          events_by_type=by_type, first_event=_from_epoch_us(first), last_event=_from_epoch_us(last),
                          interactions=int(pairs))


__all__ = ["SCHEMA_VERSION", "PostgresStore"]
