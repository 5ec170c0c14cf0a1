"""What only the PostgreSQL store has: many writers at once (processes, hosts), a schema shared by them, a server that
may be unreachable, a URL that may hold a password. The behaviour both backends share is in tests/contract."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from typer.testing import CliRunner

from aisle.cli import app
from aisle.data.readers.base import Dataset
from aisle.store import describe, open_store
from aisle.types import Event, EventType, events_frame
from tests.pgserver import fresh_database, postgres_server
from tests.redisserver import free_port

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _log(start: int, stop: int, *, ids: bool) -> pl.DataFrame:
    return events_frame([Event(f"u{k % 50}", f"i{k % 300}", EventType.VIEW, T0 + timedelta(seconds=k),
                               event_id=f"e{k}" if ids else None) for k in range(start, stop)])


@pytest.mark.parametrize("ids", [True, False])
def test_concurrent_writers_store_each_event_exactly_once(server: str, ids: bool) -> None:
    """Six writers, each with its own store (its own pool, as separate processes would have), append overlapping
    batches at the same moment (half of them the same log in the same order, so their inserts of a key race):
    every key is stored once and the writers' `inserted` add up to the keys."""
    url = fresh_database(server, f"concurrent_{int(ids)}")
    with open_store(url):
        pass  # the schema exists before the race (the race on creating it is the next test)
    batches = [*(_log(0, 2400, ids=ids) for _ in range(3)), *(_log(k * 300, k * 300 + 900, ids=ids) for k in range(3))]
    inserted: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(batches))

    def write(batch: pl.DataFrame) -> None:
        try:
            with open_store(url) as store:
                start.wait()
                for part in batch.iter_slices(300):
                    inserted.append(store.append_events(part).inserted)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with open_store(url, read_only=True) as store:
        stored = store.events()
    distinct = 2400
    assert stored.height == distinct == sum(inserted)
    assert stored.select("user_id", "item_id", "timestamp").n_unique() == distinct


def test_several_processes_creating_the_schema_at_once_do_not_collide(server: str) -> None:
    url = fresh_database(server, "schema_race")
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            open_store(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


def test_a_store_of_another_schema_version_is_refused(server: str) -> None:
    import psycopg

    url = fresh_database(server, "old_version")
    open_store(url).close()
    with psycopg.connect(url, autocommit=True) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        con.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="schema version 0"):
        open_store(url)


def test_unreachable_server_and_passwords_in_messages(server: str, tmp_path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://aisle:s3cret@127.0.0.1:{port}/shop"
    assert describe(url) == f"postgresql://aisle:***@127.0.0.1:{port}/shop"
    runner = CliRunner()
    for args in (["stats", "--db", url], ["export", "--db", url, "--out", str(tmp_path / "x")],
                 ["train", f"store:{url}", "--out", str(tmp_path / "b")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output and "s3cret" not in r.output, r.output
        assert "connection" in r.output.lower() or "connect" in r.output.lower(), r.output
    # a database without an Aisle store: the same message as a missing DuckDB file
    empty = fresh_database(server, "not_a_store")
    r = runner.invoke(app, ["stats", "--db", empty])
    assert r.exit_code == 2 and "no Aisle store here" in r.stderr


def test_read_dataset_reads_one_snapshot_while_others_write(server: str) -> None:
    """Training reads items, users and events as of one moment: events appended by another writer between the
    reads of two tables are not in this read (they are in the next)."""
    url = fresh_database(server, "snapshot")
    with open_store(url) as store, open_store(url) as other:
        store.append_events(_log(0, 10, ids=True))
        read_users = store.users

        def users_then_another_writer_appends() -> pl.DataFrame:
            out = read_users()
            assert other.append_events(_log(10, 25, ids=True)).inserted == 15  # committed before events are read
            return out

        store.users = users_then_another_writer_appends  # type: ignore[method-assign]
        data = store.read_dataset()
        del store.users
        assert data.events.height == 10 and data.accounting()["events"]["total"] == 10
        assert store.read_dataset().events.height == 25


def test_a_store_moves_between_backends_unchanged(server: str, tmp_path) -> None:
    """PostgreSQL -> DuckDB with `aisle ingest store:postgresql://... --db FILE`, and DuckDB -> PostgreSQL through
    an export: the same items, users, events and statistics at each step."""
    from tests.contract.test_store import _tricky

    url, back_url = fresh_database(server, "move_from"), fresh_database(server, "move_back")
    with open_store(url) as pg:
        pg.ingest(_tricky())
        first = pg.read_dataset()
        first_stats = pg.stats()
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", f"store:{url}", "--db", str(tmp_path / "moved.duckdb"), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["export", "--db", str(tmp_path / "moved.duckdb"), "--out", str(tmp_path / "export")])
    assert r.exit_code == 0, r.output
    exported = {t: pl.read_parquet(tmp_path / "export" / f"{t}.parquet") for t in ("items", "users", "events")}
    with open_store(back_url) as pg:
        pg.ingest(Dataset(name="moved", **exported))
    for target in (str(tmp_path / "moved.duckdb"), back_url):
        with open_store(target, read_only=True) as store:
            data = store.read_dataset()
            assert store.stats() == first_stats, target
        for table, key in (("items", ["item_id"]), ("users", ["user_id"]),
                           ("events", ["user_id", "timestamp", "event_type", "item_id"])):
            a, b = getattr(data, table).sort(key, nulls_last=True), getattr(first, table).sort(key, nulls_last=True)
            assert a.equals(b), (target, table, a, b)


def test_serve_refuses_an_unreachable_postgresql_store_before_starting(tmp_path) -> None:
    port = free_port()  # nothing listens there
    r = CliRunner().invoke(app, ["serve", "--bundle", str(tmp_path), "--store",
                                 f"postgresql://aisle:s3cret@127.0.0.1:{port}/shop"])
    assert r.exit_code == 2 and "--store postgresql://aisle:***@127.0.0.1" in " ".join(r.stderr.split()), r.output
    assert "s3cret" not in r.output and "Traceback" not in r.output
