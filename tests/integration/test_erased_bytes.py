"""When erased bytes leave the files: a delete only marks rows (DuckDB keeps them in the file's blocks, PostgreSQL
in dead tuples, Redis' append-only file keeps the commands that added them); `aisle compact` rewrites the files and
afterwards a raw read of them finds nothing of the erased shopper. Each test first checks that the raw read does
find the bytes right after the delete, so a pass means the compaction removed them, not that the search was
blind."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aisle.cli import app
from aisle.config import Settings
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from aisle.serve import create_app
from aisle.serve.sink import StoreSink
from aisle.serve.stream import Consumer
from aisle.store import open_store
from aisle.types import EVENT_SCHEMA
from tests.bundles import save_bundle, synthetic_shop
from tests.pgserver import postgres_server
from tests.redisserver import redis_server

SECRET_USER = "erased-shopper-7f3a9c"
SECRET_QUERY = "unmistakable-weekend-query-text"


def _others(n: int = 30_000) -> pl.DataFrame:
    """Enough other shoppers' events that the erased one's rows share blocks with rows that stay."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return pl.DataFrame({"event_id": [f"o{i}" for i in range(n)], "user_id": [f"u{i % 997}" for i in range(n)],
                         "item_id": [f"i{i % 311}" for i in range(n)], "event_type": ["view"] * n,
                         "timestamp": [t0 + timedelta(seconds=i) for i in range(n)]}, schema_overrides={
                             "timestamp": EVENT_SCHEMA["timestamp"]}, strict=False)


def _secret() -> pl.DataFrame:
    t = datetime(2026, 1, 1, 5, tzinfo=UTC)
    return pl.DataFrame({"event_id": [f"{SECRET_USER}-{k}" for k in range(3)], "user_id": [SECRET_USER] * 3,
                         "item_id": [None, "i1", "i2"], "event_type": ["search", "view", "view"],
                         "timestamp": [t, t + timedelta(seconds=1), t + timedelta(seconds=2)],
                         "query": [SECRET_QUERY, None, None]}, schema_overrides={
                             "timestamp": EVENT_SCHEMA["timestamp"]}, strict=False)


def _fill(target: str) -> int:
    with open_store(target) as store:
        store.append_events(_others().head(15_000))
        store.append_events(_secret())
        store.append_events(_others().tail(15_000))
        assert store.delete_user(SECRET_USER) == 3
        return store.stats().events


def _found(paths: list[Path]) -> list[str]:
    blob = b"".join(p.read_bytes() for p in paths if p.is_file())
    return [s for s in (SECRET_USER, SECRET_QUERY) if s.encode() in blob]


def test_duckdb_erased_bytes_leave_the_file_after_aisle_compact(tmp_path: Path) -> None:
    db = tmp_path / "shop.duckdb"
    kept = _fill(str(db))
    files = [db, Path(str(db) + ".wal")]
    assert _found(files), "the deleted rows' bytes should still be in the file before compaction"
    r = CliRunner().invoke(app, ["compact", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "Compacted" in r.output
    assert _found(files) == []
    with open_store(str(db)) as store:  # everything else is still there, keys included
        assert store.stats().events == kept
        assert store.append_events(_others().head(10)).inserted == 0


def test_postgresql_erased_bytes_leave_the_table_files_after_aisle_compact() -> None:
    import psycopg

    with postgres_server() as url:
        kept = _fill(url)
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CHECKPOINT")  # the pages with the deleted tuples reach the table files

            def files() -> list[Path]:  # the tables' heaps and their indexes (events_user holds every user id)
                root = Path(con.execute("SHOW data_directory").fetchone()[0])
                rels = ["events", "users"] + [r[0] for r in con.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename IN ('events', 'users')").fetchall()]
                out: list[Path] = []
                for rel in rels:
                    base = root / con.execute("SELECT pg_relation_filepath(%s)", [rel]).fetchone()[0]
                    out += sorted(base.parent.glob(base.name + "*"))
                return out

            # PostgreSQL may prune a dead tuple's bytes from a heap page on its own; its index entries stay
            assert _found(files()), "the deleted rows' bytes should be in the table files before compaction"
            r = CliRunner().invoke(app, ["compact", "--db", url])
            assert r.exit_code == 0, r.output
            assert _found(files()) == []
        with open_store(url, read_only=True) as store:
            assert store.stats().events == kept


def test_redis_append_only_file_forgets_erased_events_after_aisle_compact(tmp_path: Path) -> None:
    shop = synthetic_shop(SyntheticConfig(n_items=120, n_users=60, n_events=2_000, seed=3))
    out = tmp_path / "bundle"
    save_bundle(shop, (SourceSpec("trending", "trending", "trending"),), out, rounds=5, search=False)
    db = tmp_path / "live.duckdb"
    with redis_server(tmp_path / "redis", fsync="always") as url:
        settings = Settings(bundle=out, store=db, state=url, consume=False)
        events = [{"user_id": SECRET_USER, "event_type": "search", "query": SECRET_QUERY, "event_id": "q1"},
                  {"user_id": SECRET_USER, "item_id": shop.items["item_id"][0], "event_type": "view",
                   "event_id": "v1"}]
        with TestClient(create_app(settings)) as client:
            assert client.post("/events", json={"events": events}).json()["accepted"] == 2
            assert client.delete(f"/users/{SECRET_USER}").status_code == 200
        sink = StoreSink(db)
        consumer = Consumer(url, sink.locked, name="c")
        r = redis.Redis.from_url(url, decode_responses=True)
        try:
            while r.xlen("aisle:stream:events"):
                consumer.step()
        finally:
            consumer.close()
            sink.close()
        aof = sorted((tmp_path / "redis").rglob("*.aof"))
        assert SECRET_QUERY in _found(aof), "the AOF should still hold the XADD of the erased events"
        res = CliRunner().invoke(app, ["compact", "--db", str(db), "--state", url])
        assert res.exit_code == 0, res.output
        assert "0 erasure record" in res.output  # kept an hour for lists still buffered in a worker
        r.xadd("aisle:impressions", {"i": "{}"}, id="1-0")  # an entry from before the erasure not yet consumed
        res = CliRunner().invoke(app, ["compact", "--db", str(db), "--state", url, "--impression-grace", "0"])
        assert "0 erasure record" in res.output, res.output  # a consumer could still meet the user's rows
        r.delete("aisle:impressions")
        res = CliRunner().invoke(app, ["compact", "--db", str(db), "--state", url, "--impression-grace", "0"])
        assert res.exit_code == 0, res.output
        assert "1 erasure record" in res.output
        deadline = time.monotonic() + 30
        while r.info("persistence")["aof_rewrite_in_progress"] or r.info("persistence").get(
                "aof_rewrite_scheduled"):
            assert time.monotonic() < deadline, "the AOF rewrite did not finish"
            time.sleep(0.1)
        time.sleep(0.2)
        aof = sorted((tmp_path / "redis").rglob("*.aof"))
        assert SECRET_QUERY not in _found(aof)  # the erased events are gone from Redis' files
        assert r.hgetall("aisle:stream:erasures") == {}
        r.close()
        with open_store(str(db), read_only=True) as store:
            assert store.events().filter(pl.col("user_id") == SECRET_USER).is_empty()


@pytest.mark.parametrize("kind", ["duckdb"])
def test_compact_of_a_missing_store_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    r = CliRunner().invoke(app, ["compact", "--db", str(tmp_path / "nope.duckdb")])
    assert r.exit_code == 2 and "no Aisle store here" in r.output
