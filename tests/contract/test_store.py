"""The store contract: every backend behind `aisle.store.StoreBackend` (DuckDB in a temporary file, PostgreSQL in a
throwaway server this module starts) stores, deduplicates, erases, exports, counts and feeds training the same.

Each test runs once per backend; the PostgreSQL runs skip with a reason when the server binaries are absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from aisle.bundle import fingerprint, serving_problem
from aisle.cli import app
from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.data.readers import read_dataspec
from aisle.data.readers.base import Dataset
from aisle.store import Appended, StoreBackend, open_store
from aisle.types import (
    EVENT_SCHEMA,
    IMPRESSION_SCHEMA,
    ITEM_SCHEMA,
    USER_SCHEMA,
    Event,
    EventType,
    Item,
    events_frame,
    items_frame,
)
from tests.pgserver import fresh_database, postgres_server

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BACKENDS = ["duckdb", "postgresql"]
runner = CliRunner()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


_made = 0


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a new, empty store lives: a DuckDB file path or a postgresql:// URL of a new database."""
    if request.param == "duckdb":
        return str(tmp_path / "store.duckdb")
    global _made
    _made += 1
    return fresh_database(request.getfixturevalue("pg_server"), f"contract_{_made}")


@pytest.fixture
def store(target: str) -> Iterator[StoreBackend]:
    with open_store(target) as s:
        yield s


def _events(n: int, *, ids: bool, user: str = "u1", start: int = 0) -> pl.DataFrame:
    return events_frame([
        Event(user_id=user, item_id=f"i{k}", event_type=EventType.VIEW, timestamp=T0 + timedelta(minutes=k),
              event_id=f"e{user}{k}" if ids else None)
        for k in range(start, n)
    ])


def _tricky() -> Dataset:
    """Values that a careless encoding loses: empty strings next to nulls, quotes, commas, new lines, backslashes,
    non-ASCII, microseconds, instants before 1970, extreme values, empty category lists next to missing ones."""
    events = events_frame([
        Event("u,1", "i\"1", EventType.VIEW, T0 + timedelta(microseconds=1), session_id="", event_id="a"),
        Event("u,1", None, EventType.SEARCH, T0 + timedelta(seconds=1), query="red\nshoes, \"size\" 42\\"),
        Event("ü2", "i2", EventType.PURCHASE, datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC), value=19.99),
        Event("ü2", "i2", EventType.ADD_TO_CART, T0, value=-0.0, session_id="s\\N"),
        Event("ü2", "i\\.", EventType.VIEW, T0 + timedelta(days=400), value=1e300, query=""),
        Event("u3", "i3", EventType.VIEW, T0, event_id="x|y"),
        Event("u3", "i3", EventType.CLICK, T0 + timedelta(seconds=2), request_id="r-1,\"x\""),
    ])
    items = items_frame([
        Item("i\"1", title="Boots, \"waterproof\"", description="line 1\nline 2", brand="Ünïcode", categories=(),
             price=49.5, attributes={"color": "red", "sizes": [41, 42]}, created_at=T0 + timedelta(microseconds=5)),
        Item("i2", title="", categories=("shoes", "boots", ""), price=None, available=False),
        Item("i\\.", title="\\."),
    ])
    items = pl.concat([items, items_frame([Item("i3")]).with_columns(pl.lit(None, pl.List(pl.String))
                                                                     .alias("categories"))])
    users = pl.DataFrame({"user_id": ["u,1", "ü2", "u4"], "attributes": ['{"tier": "gold"}', "", None]},
                         schema=USER_SCHEMA)
    return Dataset(name="tricky", events=events, items=items, users=users)


def _same(a: pl.DataFrame, b: pl.DataFrame, key: list[str]) -> None:
    """Equal content, whatever the row order among ties of the store's ordering."""
    a, b = a.sort(key, nulls_last=True), b.sort(key, nulls_last=True)
    assert a.schema == b.schema
    assert a.equals(b), f"\n{a}\n!=\n{b}"


_EVENT_SORT = ["user_id", "timestamp", "event_type", "item_id"]

# ---- idempotent appends -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [True, False])
def test_the_same_batch_twice_is_stored_once(store: StoreBackend, ids: bool) -> None:
    assert store.append_events(_events(5, ids=ids)) == Appended(5, 5)
    again = store.append_events(_events(5, ids=ids))
    assert (again.offered, again.inserted, again.duplicates) == (5, 0, 5)
    assert store.stats().events == 5 and store.events().height == 5


@pytest.mark.parametrize("ids", [True, False])
def test_overlapping_batches_store_only_the_new_events(store: StoreBackend, ids: bool) -> None:
    store.append_events(_events(5, ids=ids))
    again = store.append_events(_events(7, ids=ids, start=3))
    assert (again.inserted, again.duplicates) == (2, 2)
    assert sorted(store.events()["item_id"].to_list()) == [f"i{k}" for k in range(7)]


@pytest.mark.parametrize("ids", [True, False])
def test_repeats_inside_one_batch_are_stored_once(store: StoreBackend, ids: bool) -> None:
    res = store.append_events(pl.concat([_events(3, ids=ids), _events(4, ids=ids), _events(2, ids=ids, user="u2")]))
    assert (res.offered, res.inserted) == (9, 6)
    assert store.events().height == 6


@pytest.mark.parametrize("ids", [True, False])
def test_a_fresh_batch_still_skips_the_stored_copies_of_its_events(store: StoreBackend, ids: bool) -> None:
    """`fresh=True` (what the stream consumer says of entries it reads for the first time) narrows where a backend
    looks for stored copies to the batch's time span; it never changes what counts as one: an entry delivered
    again stores nothing twice, also with stored events before and after its span and copies on its very edges."""
    store.append_events(_events(10, ids=ids))  # minutes 0..9
    batch = pl.concat([_events(7, ids=ids, start=3), _events(12, ids=ids, start=10), _events(11, ids=ids, start=10)])
    got = store.append_events(batch, fresh=True)  # minutes 3..6 stored, 10 and 11 new (10 twice in the batch)
    assert (got.offered, got.inserted) == (7, 2)
    assert store.append_events(batch, fresh=True).inserted == 0
    assert store.append_events(_events(12, ids=ids), fresh=True).inserted == 0
    assert store.events().height == store.stats().events == 12


def test_events_without_ids_are_keyed_by_user_item_type_time_and_query(store: StoreBackend) -> None:
    base = Event("u1", "i1", EventType.SEARCH, T0, query="boots")
    assert store.append_events(events_frame([base])).inserted == 1
    same = events_frame([Event("u1", "i1", EventType.SEARCH, T0, query="boots", session_id="other", value=3.0)])
    assert store.append_events(same).inserted == 0  # session and value are not part of the key
    variants = [Event("u2", "i1", EventType.SEARCH, T0, query="boots"),
                Event("u1", "i2", EventType.SEARCH, T0, query="boots"),
                Event("u1", None, EventType.SEARCH, T0, query="boots"),
                Event("u1", "i1", EventType.VIEW, T0, query="boots"),
                Event("u1", "i1", EventType.SEARCH, T0 + timedelta(microseconds=1), query="boots"),
                Event("u1", "i1", EventType.SEARCH, T0, query="boot"),
                Event("u1", "i1", EventType.SEARCH, T0)]
    assert store.append_events(events_frame(variants)).inserted == len(variants)
    assert store.append_events(events_frame([base, *variants])).inserted == 0


def test_an_id_is_the_identity_whatever_the_content(store: StoreBackend) -> None:
    a = _events(1, ids=True)
    store.append_events(a)
    assert store.append_events(a.with_columns(pl.lit("other-item").alias("item_id"))).inserted == 0
    assert store.append_events(a.with_columns(pl.col("timestamp") + timedelta(days=30))).inserted == 0
    assert store.append_events(a.with_columns(pl.lit("e-new").alias("event_id"))).inserted == 1


def test_long_ids_and_queries_are_keys_like_any_other(store: StoreBackend) -> None:
    """A key far longer than an index entry may be (PostgreSQL's B-tree takes ~2.7 kB): kept, and deduplicated."""
    import secrets

    query, long_id = secrets.token_hex(5_000), "id-" + secrets.token_hex(3_000)  # random: no compression helps
    batch = events_frame([Event("u1", None, EventType.SEARCH, T0, query=query),
                          Event("u1", None, EventType.SEARCH, T0, query=query[:-1]),
                          Event("u1", "i1", EventType.VIEW, T0, event_id=long_id)])
    assert store.append_events(batch).inserted == 3
    assert store.append_events(batch).inserted == 0
    assert sorted(store.events()["query"].drop_nulls().str.len_chars().to_list()) == [9_999, 10_000]


@pytest.mark.parametrize("ids", [True, False])
@pytest.mark.parametrize("preloaded", [0, 2])
def test_bulk_ingest_in_batches_stores_each_event_once(store: StoreBackend, ids: bool, preloaded: int) -> None:
    if preloaded:
        store.append_events(_events(preloaded, ids=ids))
    log = pl.concat([_events(5, ids=ids), _events(3, ids=ids), _events(6, ids=ids, user="u2")])
    seen: list[int] = []
    res = store.ingest(Dataset(name="t", events=log), batch_rows=4, progress=seen.append)
    assert (res["events"].offered, res["events"].inserted) == (14, 11 - preloaded)
    assert sum(seen) == 14
    assert store.stats().events == 11
    assert store.ingest(Dataset(name="t", events=log), batch_rows=4)["events"].inserted == 0


# ---- upserts and erase --------------------------------------------------------------------------------------


def test_upserts_replace_items_and_users_by_id(store: StoreBackend) -> None:
    store.upsert_items(items_frame([Item("a", title="Old", price=5.0, categories=("x", "y")), Item("b", title="B")]))
    n = store.upsert_items(items_frame([Item("a", title="Older"), Item("a", title="New", price=4.0, available=False,
                                                                      categories=("z",))]))
    assert n == 1  # a repeated id inside one upsert: the last row wins
    items = store.items()
    assert items["item_id"].to_list() == ["a", "b"]
    row = items.row(0, named=True)
    assert (row["title"], row["price"], row["available"], row["categories"]) == ("New", 4.0, False, ["z"])
    store.upsert_users(pl.DataFrame({"user_id": ["u1", "u2"], "attributes": ['{"a": 1}', None]}))
    store.upsert_users(pl.DataFrame({"user_id": ["u1"], "attributes": ['{"a": 2}']}))
    assert store.users().rows() == [("u1", '{"a": 2}'), ("u2", None)]


def test_erase_removes_the_user_and_every_event_of_theirs_only(store: StoreBackend) -> None:
    store.append_events(pl.concat([_events(4, ids=True, user="u1"), _events(13, ids=False, user="u1", start=10),
                                   _events(3, ids=True, user="u2")]))
    store.upsert_users(pl.DataFrame({"user_id": ["u1", "u2"], "attributes": ["{}", "{}"]}))
    kept = store.events().filter(pl.col("user_id") == "u2")
    assert store.delete_user("u1") == 7
    assert store.users()["user_id"].to_list() == ["u2"]
    assert store.events().equals(kept)
    assert store.stats().users == 1
    assert store.delete_user("u1") == 0
    # erased events can be stored again (an erase is not a tombstone): a re-send after erase is a new event
    assert store.append_events(_events(1, ids=True, user="u1")).inserted == 1


# ---- reads: read_dataset, export, stats, the store: reader ------------------------------------------------


def test_read_dataset_is_what_was_ingested(store: StoreBackend) -> None:
    data = _tricky()
    res = store.ingest(data)
    assert {t: (a.offered, a.inserted) for t, a in res.items()} == {"items": (4, 4), "users": (3, 3),
                                                                     "events": (7, 7)}
    back = store.read_dataset()
    _same(back.events, data.events, _EVENT_SORT)
    _same(back.items, data.items, ["item_id"])
    _same(back.users, data.users, ["user_id"])
    assert back.events.schema == pl.Schema(EVENT_SCHEMA) and back.items.schema == pl.Schema(ITEM_SCHEMA)
    assert back.accounting() == {"events": {"total": 7, "loaded": 7, "rejected": 0},
                                 "items": {"total": 4, "loaded": 4, "rejected": 0},
                                 "users": {"total": 3, "loaded": 3, "rejected": 0}}
    # the store's own order: by user, then time
    ev = store.events()
    assert ev.select("user_id", "timestamp").equals(ev.select("user_id", "timestamp").sort("user_id", "timestamp"))


def test_export_then_read_back_is_the_store(store: StoreBackend, tmp_path: Path) -> None:
    store.ingest(_tricky())
    store.append_impressions(_impressions("r1", "u,1", 3))
    paths = store.export_parquet(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"items.parquet", "users.parquet", "events.parquet",
                                                "impressions.parquet"}
    for table, key in (("items", ["item_id"]), ("users", ["user_id"]), ("events", _EVENT_SORT),
                       ("impressions", ["request_id", "position"])):
        _same(pl.read_parquet(paths[table]), getattr(store, table)(), key)  # the files hold the store exactly
    back = read_dataspec(f"aisle:{tmp_path / 'out'}")  # and the `aisle:` reader takes them back
    _same(back.events, store.events(), _EVENT_SORT)
    # the reader's normalisations: a missing category list is [], missing attributes are {}
    _same(back.users, store.users().with_columns(pl.col("attributes").fill_null("{}")), ["user_id"])
    no_list = pl.col("categories").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    _same(back.items, store.items().with_columns(no_list), ["item_id"])


# ---- the impression log ------------------------------------------------------------------------------------


def _impressions(request_id: str, user: str, n: int, *, at: datetime = T0, arm: str | None = "b") -> pl.DataFrame:
    return pl.DataFrame({
        "request_id": [request_id] * n, "timestamp": [at] * n, "user_id": [user] * n, "session_id": ["s1"] * n,
        "surface": ["recommendations"] * n, "item_id": [f"i{k}" for k in range(n)],
        "position": list(range(1, n + 1)), "score": [1.0 / (k + 1) for k in range(n)], "propensity": [1.0] * n,
        "model_version": ["v1"] * n, "arm": [arm] * n, "query": [None] * n}, schema=IMPRESSION_SCHEMA)


def test_impressions_are_stored_once_read_in_order_and_erased_with_the_user(store: StoreBackend) -> None:
    assert store.impressions().schema == pl.Schema(IMPRESSION_SCHEMA) and store.impressions().is_empty()
    first = pl.concat([_impressions("r2", "u2", 2, at=T0 + timedelta(seconds=1)), _impressions("r1", "u1", 3)])
    assert store.append_impressions(first) == Appended(5, 5)
    # a redelivered batch (a stream entry written twice), and a repeat inside one batch, store nothing again
    assert store.append_impressions(first) == Appended(5, 0)
    assert store.append_impressions(pl.concat([_impressions("r3", "u1", 1, arm=None)] * 2)) == Appended(2, 1)
    back = store.impressions()
    assert back["request_id"].to_list() == ["r1", "r1", "r1", "r3", "r2", "r2"]  # by time, request, position
    # what the worker's exploration update reads: only the lists served after a time (T0 itself excluded)
    t0_us = int(T0.timestamp() * 1_000_000)
    assert store.impressions(since_us=t0_us)["request_id"].to_list() == ["r2", "r2"]
    assert store.impressions(since_us=t0_us - 1).height == 6
    _same(back, pl.concat([first, _impressions("r3", "u1", 1, arm=None)]), ["request_id", "position"])
    store.delete_user("u1")
    assert store.impressions()["request_id"].to_list() == ["r2", "r2"]


def test_events_keep_the_request_they_answer(store: StoreBackend) -> None:
    store.append_events(events_frame([Event("u1", "i1", EventType.CLICK, T0, request_id="r1"),
                                      Event("u1", "i2", EventType.VIEW, T0 + timedelta(seconds=1))]))
    assert store.events()["request_id"].to_list() == ["r1", None]


def test_a_store_made_before_request_ids_and_impressions_is_migrated_on_open(target: str) -> None:
    old = ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('schema_version', '1');"
           "CREATE TABLE items (item_id TEXT PRIMARY KEY, title TEXT, description TEXT, brand TEXT, "
           "categories TEXT[], price DOUBLE PRECISION, currency TEXT, available BOOLEAN, attributes TEXT, "
           "created_at TIMESTAMPTZ); CREATE TABLE users (user_id TEXT PRIMARY KEY, attributes TEXT);"
           "CREATE TABLE events (natural_key TEXT, event_id TEXT, user_id TEXT NOT NULL, item_id TEXT, "
           "event_type TEXT NOT NULL, timestamp TIMESTAMPTZ NOT NULL, session_id TEXT, value DOUBLE PRECISION, "
           "query TEXT); INSERT INTO events VALUES (NULL, 'e0', 'u0', 'i0', 'view', '2026-01-01T00:00:00Z', "
           "NULL, NULL, NULL)")
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target, autocommit=True) as con:
            con.execute(old.replace("timestamp TIMESTAMPTZ", '"timestamp" TIMESTAMPTZ'))
    else:
        import duckdb

        with duckdb.connect(target) as con:
            con.execute(old)
    with open_store(target, read_only=True) as ro:  # not migrated: what it lacks reads as nulls and an empty log
        assert ro.events()["request_id"].to_list() == [None] and ro.impressions().is_empty()
    with open_store(target) as store:
        store.append_events(events_frame([Event("u1", "i1", EventType.CLICK, T0, request_id="r1")]))
        store.append_impressions(_impressions("r1", "u1", 2))
        assert store.events()["request_id"].to_list() == [None, "r1"]
        assert store.impressions().height == 2


def test_stats_count_types_span_and_density(store: StoreBackend) -> None:
    empty = store.stats()
    assert (empty.events, empty.users, empty.first_event, empty.density) == (0, 0, None, 0.0)
    store.append_events(_events(4, ids=True, user="u1"))
    store.append_events(events_frame([Event("u2", None, EventType.SEARCH, T0, query="boots"),
                                      Event("u2", "i0", EventType.ADD_TO_CART, T0 - timedelta(microseconds=1))]))
    store.upsert_items(items_frame([Item("i0"), Item("catalog-only")]))
    store.upsert_users(pl.DataFrame({"user_id": ["profile-only"]}))
    s = store.stats()
    assert (s.users, s.items, s.catalog_items, s.events, s.interactions) == (3, 5, 2, 6, 5)
    assert s.events_by_type == {"view": 4, "search": 1, "add_to_cart": 1}
    assert s.first_event == T0 - timedelta(microseconds=1) and s.last_event == T0 + timedelta(minutes=3)
    assert s.density == pytest.approx(5 / 15)
    assert s.as_dict()["first_event"] == "2025-12-31T23:59:59.999999+00:00"


def test_the_store_source_reads_the_store(target: str) -> None:
    data = _tricky()
    with open_store(target) as store:  # closed first: DuckDB opens a file read-only only when no writer holds it
        store.ingest(data)
    back = read_dataspec(f"store:{target}")
    _same(back.events, data.events, _EVENT_SORT)
    _same(back.items, data.items, ["item_id"])
    assert back.accounting()["events"] == {"total": 7, "loaded": 7, "rejected": 0}
    if target.startswith("postgresql://"):  # a URL's own ?options go to the server, not to the reader
        assert read_dataspec(f"store:{target}?connect_timeout=5").events.height == 7
        with pytest.raises(ValueError, match="cannot read this Aisle store"):
            read_dataspec(f"store:{target.rsplit('/', 1)[0]}/no_such_database")
    else:
        with pytest.raises(ValueError, match="takes no options"):
            read_dataspec(f"store:{target}?user_id=x")


def test_read_only_store_must_exist_and_refuses_writes(target: str) -> None:
    with pytest.raises(FileNotFoundError, match="no Aisle store"):
        open_store(target, read_only=True)
    with open_store(target) as s:
        s.append_events(_events(2, ids=True))
    with open_store(target, read_only=True) as s:
        assert s.events().height == 2
        with pytest.raises(Exception, match=r"(?i)read.only"):
            s.append_events(_events(3, ids=True))
        assert s.events().height == 2


# ---- the command line on each backend ---------------------------------------------------------------------


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.slow
def test_cli_ingest_stats_export_and_train_from_the_store(target: str, tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    _ok(runner.invoke(app, ["generate", "--out", str(shop), "--items", "200", "--users", "100", "--events", "5000",
                            "--seed", "3"]))
    first = json.loads(_ok(runner.invoke(app, ["ingest", f"aisle:{shop}", "--db", target, "--json"])))
    again = json.loads(_ok(runner.invoke(app, ["ingest", f"aisle:{shop}", "--db", target, "--json"])))
    assert first["tables"]["events"]["inserted"] == first["events"] > 4900
    assert (again["tables"]["events"]["inserted"], again["tables"]["events"]["duplicates"]) == (0, first["events"])
    stats = json.loads(_ok(runner.invoke(app, ["stats", "--db", target, "--json"])))
    assert stats == first["store"] and stats["events"] == first["events"] and stats["catalog_items"] == 200
    _ok(runner.invoke(app, ["export", "--db", target, "--out", str(tmp_path / "export")]))
    original, exported = read_dataspec(f"aisle:{shop}"), read_dataspec(f"aisle:{tmp_path / 'export'}")
    for table, key in (("items", ["item_id"]), ("users", ["user_id"]), ("events", ["event_id"])):
        _same(getattr(exported, table), getattr(original, table), key)
    config = tmp_path / "fast.json"
    config.write_text(json.dumps({"pipeline": {"sources": DEMO_SOURCES_FAST}}))
    out = _ok(runner.invoke(app, ["train", f"store:{target}", "--out", str(tmp_path / "bundle"), "--config",
                                  str(config), "--no-dense"]))
    assert "Serving bundle" in out
    assert serving_problem(tmp_path / "bundle") is None
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["data_fingerprint"] == fingerprint(original.events)  # trained on exactly the ingested events


# ---- reading after a watermark (what `aisle worker` refreshes from) ---------------------------------------------


def test_events_since_a_watermark_are_each_read_once_late_ones_included(store: StoreBackend) -> None:
    first, mark = store.read_events_since(0)
    assert first.is_empty()
    store.append_events(_events(4, ids=True))
    got, mark1 = store.read_events_since(mark)
    assert sorted(got["item_id"].to_list()) == ["i0", "i1", "i2", "i3"] and got.schema == EVENT_SCHEMA
    assert store.read_events_since(mark1)[0].is_empty()  # nothing new: nothing read, the watermark holds
    # a late event with an older timestamp than everything read so far, and a repeat that is not stored
    late = events_frame([Event("u9", "i9", EventType.PURCHASE, T0 - timedelta(days=3), event_id="late")])
    store.append_events(pl.concat([late, _events(2, ids=True)]))
    again, mark2 = store.read_events_since(mark1)
    assert again["event_id"].to_list() == ["late"]
    assert store.read_events_since(mark2)[0].is_empty()
    assert store.read_events_since(0)[0].height == 5  # from the start: the whole log, once


def test_events_since_skip_erased_users_and_survive_erasing_the_newest_rows(store: StoreBackend) -> None:
    store.append_events(_events(3, ids=True, user="a"))
    _, mark = store.read_events_since(0)
    store.append_events(_events(2, ids=True, user="b"))
    store.delete_user("b")  # the newest rows go: their positions must not be handed out again
    assert store.read_events_since(mark)[0].is_empty()
    store.append_events(_events(1, ids=True, user="c"))
    got, _ = store.read_events_since(mark)
    assert got["user_id"].to_list() == ["c"]


def test_a_store_written_before_watermarks_gets_them_in_stored_order(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # the version-1 layout, as an older Aisle wrote it
    con.execute("""CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
                   CREATE TABLE events (natural_key VARCHAR, event_id VARCHAR, user_id VARCHAR NOT NULL,
                   item_id VARCHAR, event_type VARCHAR NOT NULL, timestamp TIMESTAMPTZ NOT NULL, session_id VARCHAR,
                   value DOUBLE, query VARCHAR);
                   INSERT INTO events VALUES (NULL, 'old1', 'u', 'i1', 'view', '2026-01-01 00:00:00+00', NULL, NULL,
                   NULL)""")
    con.close()
    with open_store(path) as s:
        old, mark = s.read_events_since(0)
        assert old["event_id"].to_list() == ["old1"]
        s.append_events(_events(1, ids=True))
        assert s.read_events_since(mark)[0]["event_id"].to_list() == ["eu10"]
