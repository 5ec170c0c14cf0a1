from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.store import Store
from aisle.types import Event, EventType, Item, events_frame, items_frame
from tests.conftest import FIXTURES

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _events(n: int, *, ids: bool, user: str = "u1") -> pl.DataFrame:
    return events_frame([
        Event(user_id=user, item_id=f"i{k}", event_type=EventType.VIEW, timestamp=T0 + timedelta(minutes=k),
              event_id=f"e{user}{k}" if ids else None)
        for k in range(n)
    ])


@pytest.fixture
def store(tmp_path) -> Store:
    with Store(tmp_path / "s.duckdb") as s:
        yield s


@pytest.mark.parametrize("ids", [True, False])
def test_reingest_is_idempotent(store: Store, ids: bool) -> None:
    first = store.append_events(_events(5, ids=ids))
    again = store.append_events(_events(7, ids=ids))
    assert (first.inserted, first.duplicates) == (5, 0)
    assert (again.inserted, again.duplicates) == (2, 5)
    assert store.stats().events == 7


def test_repeats_inside_one_batch_are_stored_once(store: Store) -> None:
    batch = pl.concat([_events(3, ids=False), _events(3, ids=False)])
    res = store.append_events(batch)
    assert (res.offered, res.inserted) == (6, 3)


@pytest.mark.parametrize("ids", [True, False])
@pytest.mark.parametrize("preloaded", [0, 2])
def test_bulk_ingest_in_batches_stores_each_event_once(store: Store, ids: bool, preloaded: int) -> None:
    """Repeats across batches and against what is stored are caught whichever insert path a batch takes."""
    from aisle.data.readers.base import Dataset

    if preloaded:
        store.append_events(_events(preloaded, ids=ids))
    log = pl.concat([_events(5, ids=ids), _events(3, ids=ids), _events(6, ids=ids, user="u2")])
    res = store.ingest(Dataset(name="t", events=log), batch_rows=4)
    assert (res["events"].offered, res["events"].inserted) == (14, 11 - preloaded)
    assert store.stats().events == 11
    assert store.ingest(Dataset(name="t", events=log), batch_rows=4)["events"].inserted == 0


def test_same_id_wins_over_different_natural_key(store: Store) -> None:
    a = _events(1, ids=True)
    b = a.with_columns(pl.lit("other-item").alias("item_id"))  # a resend with the same id is the same event
    store.append_events(a)
    assert store.append_events(b).inserted == 0


def test_upsert_items_replaces_by_id(store: Store) -> None:
    store.upsert_items(items_frame([Item("a", title="Old", price=5.0), Item("b", title="B")]))
    store.upsert_items(items_frame([Item("a", title="New", price=4.0, available=False)]))
    items = store.items()
    assert items.height == 2
    row = items.filter(pl.col("item_id") == "a").row(0, named=True)
    assert (row["title"], row["price"], row["available"]) == ("New", 4.0, False)


def test_delete_user_erases_every_event(store: Store) -> None:
    store.append_events(pl.concat([_events(4, ids=True, user="u1"), _events(3, ids=True, user="u2")]))
    assert store.delete_user("u1") == 4
    assert store.events()["user_id"].unique().to_list() == ["u2"]
    assert store.delete_user("u1") == 0


def test_export_parquet_round_trips(store: Store, tmp_path) -> None:
    data = read_dataspec(f"s3rec:{FIXTURES / 's3rec' / 'Tiny.txt'}")
    store.ingest(data)
    store.export_parquet(tmp_path / "out")
    back = read_dataspec(f"aisle:{tmp_path / 'out'}")
    assert back.events.sort("user_id", "timestamp").equals(store.events())
    assert back.items.height == data.items.height


def test_stats_counts_types_span_and_density(store: Store) -> None:
    store.append_events(_events(4, ids=True, user="u1"))
    store.append_events(events_frame([Event("u2", None, EventType.SEARCH, T0, query="boots")]))
    s = store.stats()
    assert (s.users, s.items, s.events) == (2, 4, 5)
    assert s.events_by_type == {"view": 4, "search": 1}
    assert s.first_event == T0 and s.last_event == T0 + timedelta(minutes=3)
    assert s.density == pytest.approx(4 / 8)


def test_read_only_store_must_exist(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no Aisle store"):
        Store(tmp_path / "missing.duckdb", read_only=True)


def test_a_store_opened_for_background_writing_runs_one_duckdb_thread(tmp_path) -> None:
    """The stream consumer beside the API workers opens its store through `StoreSink(path, threads=1)`: its writes
    never take every core at once (DuckDB's default is one thread per core)."""
    from aisle.serve.sink import StoreSink

    def threads(store: Store) -> int:
        return int(store.con.execute("SELECT current_setting('threads')").fetchone()[0])

    sink = StoreSink(tmp_path / "s.duckdb", threads=1)
    try:
        with sink.locked() as store:
            assert threads(store) == 1
            store.append_events(_events(3, ids=True))
    finally:
        sink.close()
    with Store(tmp_path / "s.duckdb") as store:
        assert store.events().height == 3
        assert threads(store) == duckdb.connect(":memory:").execute("SELECT current_setting('threads')").fetchone()[0]
