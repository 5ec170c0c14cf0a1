"""No acknowledged event is lost: write-through to the store without Redis, the durable Redis event stream with
its consumers, and a kill -9 test of real processes (2 API workers + `aisle consume`)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import redis
from fastapi.testclient import TestClient

from aisle.config import Settings
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from aisle.serve import Services, create_app
from aisle.serve.sink import StoreSink
from aisle.serve.stream import Consumer, stream_key
from aisle.store import Store
from tests.bundles import save_bundle, synthetic_shop
from tests.redisserver import free_port, redis_server, start_redis
from tests.serving import clients_per_worker, wait_ready

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shop = synthetic_shop(SyntheticConfig(n_items=200, n_users=100, n_events=4_000, seed=5))
    out = tmp_path_factory.mktemp("bundle") / "b"
    save_bundle(shop, SOURCES, out, rounds=10, search=False)
    return out


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A fresh Redis with AOF (appendfsync always) for each test."""
    with redis_server(tmp_path / "redis") as url:
        yield url


def _events(user: str, n: int, start: int = 0) -> dict[str, Any]:
    return {"events": [{"user_id": user, "item_id": f"i{(start + i) % 150:05d}", "event_type": "view",
                        "event_id": f"{user}-{start + i}"} for i in range(n)]}


def _stored(db: Path) -> pl.DataFrame:
    with Store(db, read_only=True) as store:
        return store.events()


# ---- without Redis: write-through ------------------------------------------------------------------------------


def test_without_redis_an_acknowledged_event_is_in_the_store_when_the_answer_comes(bundle_dir: Path,
                                                                                    tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    with TestClient(create_app(Settings(bundle=bundle_dir, store=db))) as client:
        assert client.post("/events", json=_events("wt", 30)).json() == {"accepted": 30, "duplicates": 0}
        # no flush, no wait: the store has them now (a kill -9 of the server here would lose nothing)
        assert sorted(_stored(db)["event_id"].to_list()) == sorted(f"wt-{i}" for i in range(30))
        # concurrent requests are committed together and each one still answers after its own commit
        results: list[dict[str, int]] = []

        def post(k: int) -> None:
            results.append(client.post("/events", json=_events(f"c{k}", 20)).json())

        threads = [threading.Thread(target=post, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [{"accepted": 20, "duplicates": 0}] * 8
        assert _stored(db).height == 30 + 160


def test_without_redis_a_failed_store_write_answers_503_and_marks_nothing_seen(bundle_dir: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "live.duckdb"
    real = Store.append_events
    failures = {"left": 1}

    def flaky(self: Store, events: pl.DataFrame) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk full (simulated)")
        return real(self, events)

    monkeypatch.setattr(Store, "append_events", flaky)
    with TestClient(create_app(Settings(bundle=bundle_dir, store=db))) as client:
        r = client.post("/events", json=_events("f", 5))
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
        assert "disk full" in r.json()["detail"]
        # not marked seen: the retry is accepted (on the old code the sink dropped the batch and the retry was a
        # duplicate for a week)
        assert client.post("/events", json=_events("f", 5)).json() == {"accepted": 5, "duplicates": 0}
        assert client.post("/events", json=_events("f", 5)).json() == {"accepted": 0, "duplicates": 5}
        assert _stored(db).height == 5


# ---- with Redis: the durable stream ------------------------------------------------------------------------------


def test_with_redis_events_go_through_the_stream_and_a_consumer_writes_them(bundle_dir: Path, tmp_path: Path,
                                                                            redis_url: str) -> None:
    db = tmp_path / "live.duckdb"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    assert r.config_get("appendonly")["appendonly"] == "yes"
    settings = Settings(bundle=bundle_dir, store=db, state=redis_url, consume=False)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        assert a.post("/events", json=_events("s", 40)).json() == {"accepted": 40, "duplicates": 0}
        assert b.post("/events", json=_events("s", 40)).json() == {"accepted": 0, "duplicates": 40}
        assert b.post("/events", json=_events("s", 10, start=35)).json() == {"accepted": 5, "duplicates": 5}
        assert r.xlen(stream_key()) == 2  # one entry per request with new events, nothing stored yet
        assert not db.exists() or _stored(db).height == 0
        lag = [ln for ln in a.get("/metrics").text.splitlines() if ln.startswith("aisle_stream_")]
        assert "aisle_stream_lag_entries 2" in lag, lag
        sink = StoreSink(db)
        consumer = Consumer(redis_url, sink.locked, name="c1")
        try:
            assert consumer.step() == 45 and consumer.step() == 0
        finally:
            consumer.close()
            sink.close()
        assert r.xlen(stream_key()) == 0 and r.xpending(stream_key(), "aisle-store")["pending"] == 0
        assert sorted(_stored(db)["event_id"].to_list()) == sorted(f"s-{i}" for i in range(45))
        text = b.get("/metrics").text
        assert "aisle_stream_lag_entries 0" in text and "aisle_stream_consumed_events_total 45" in text
        assert "aisle_stream_consumed_events_per_second " in text


def test_a_stream_append_that_fails_answers_503_and_the_retry_is_accepted(bundle_dir: Path, tmp_path: Path,
                                                                         redis_url: str) -> None:
    """The duplicate-detection keys are set in the same script as the XADD and only after it: a batch whose append
    failed can be sent again (on the old code Redis remembered it and the retry was counted as duplicates)."""
    db = tmp_path / "live.duckdb"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.set(stream_key(), "not a stream")  # every XADD fails (WRONGTYPE)
    with TestClient(create_app(Settings(bundle=bundle_dir, store=db, state=redis_url, consume=False))) as client:
        resp = client.post("/events", json=_events("x", 7))
        assert resp.status_code == 503 and "WRONGTYPE" in resp.json()["detail"], resp.text
        assert not r.keys("aisle:marks:*")
        r.delete(stream_key())
        assert client.post("/events", json=_events("x", 7)).json() == {"accepted": 7, "duplicates": 0}
        assert r.xlen(stream_key()) == 1 and r.exists("aisle:marks:x")
        assert client.post("/events", json=_events("x", 7)).json() == {"accepted": 0, "duplicates": 7}


def test_a_dead_consumers_entries_are_claimed_by_another_and_stored_once(bundle_dir: Path, tmp_path: Path,
                                                                        redis_url: str) -> None:
    db = tmp_path / "live.duckdb"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    with TestClient(create_app(Settings(bundle=bundle_dir, store=db, state=redis_url, consume=False))) as client:
        for k in range(3):
            assert client.post("/events", json=_events("d", 10, start=10 * k)).json()["accepted"] == 10
        sink = StoreSink(db)
        dead = Consumer(redis_url, sink.locked, name="dead", count=2, claim_idle_s=0.3)
        dead.ensure_group()
        taken = r.xreadgroup("aisle-store", "dead", {stream_key(): ">"}, count=2)  # took 2 entries, then died
        assert len(taken[0][1]) == 2
        with sink.locked() as store:  # ... after writing one of them, before acknowledging it
            from aisle.serve.stream import decode
            store.append_events(decode([taken[0][1][0][1]["e"]]))
        alive = Consumer(redis_url, sink.locked, name="alive", claim_idle_s=0.3)
        try:
            stored = alive.step()  # the entry nobody took, or (once 0.3 s passed: a busy machine) the dead one's two
            assert stored in (10, 20)
            deadline = time.monotonic() + 30
            while stored < 30 and time.monotonic() < deadline:  # the dead one's two, claimed once 0.3 s idle
                time.sleep(0.1)
                stored += alive.step()
            assert stored == 30 and alive.redelivered == 2
            assert alive.step() == 0
        finally:
            alive.close()
            dead.close()
            sink.close()
        assert r.xlen(stream_key()) == 0
        ids = _stored(db)["event_id"]
        assert ids.len() == 30 and ids.n_unique() == 30  # the redelivered entry stored nothing twice
        assert "aisle_stream_redelivered_entries_total 2" in client.get("/metrics").text


def test_serve_runs_a_consumer_per_worker_by_default(bundle_dir: Path, tmp_path: Path, redis_url: str) -> None:
    db = tmp_path / "live.duckdb"
    with TestClient(create_app(Settings(bundle=bundle_dir, store=db, state=redis_url))) as client:
        assert client.post("/events", json=_events("bg", 25)).json()["accepted"] == 25
        svc: Services = client.app.state.services
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with svc.sink.locked() as store:  # type: ignore[union-attr]
                if store.events("user_id = 'bg'").height == 25:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the worker's consumer did not write the events")
    assert _stored(db).height == 25


def test_the_stream_publish_feeds_the_live_history_in_time_order_without_duplicates(bundle_dir: Path,
                                                                                    tmp_path: Path,
                                                                                    redis_url: str) -> None:
    """With the stream, one script marks the batch seen, appends it to the stream and to the live histories: a
    batch out of time order lands in order, a repeat (in the batch or later) is not appended again, and the
    history keeps its last `history_length` events."""
    settings = Settings(bundle=bundle_dir, store=tmp_path / "live.duckdb", state=redis_url, consume=False,
                        history_length=4)
    t = [f"2026-01-02T03:04:0{s}Z" for s in range(6)]
    batch = [{"user_id": "h", "item_id": "i00003", "event_type": "view", "event_id": "h3", "timestamp": t[3]},
             {"user_id": "h", "item_id": "i00001", "event_type": "view", "event_id": "h1", "timestamp": t[1]},
             {"user_id": "h", "item_id": "i00001", "event_type": "view", "event_id": "h1", "timestamp": t[1]},
             {"user_id": "h", "item_id": "i00002", "event_type": "add_to_cart", "event_id": "h2", "timestamp": t[2]},
             {"user_id": "g", "query": "shoes", "event_type": "search", "event_id": "g0", "timestamp": t[0]}]
    with TestClient(create_app(settings)) as client:
        svc: Services = client.app.state.services
        assert client.post("/events", json={"events": batch}).json() == {"accepted": 4, "duplicates": 1}
        history = client.portal.call(svc.state.history, "h")[0]  # type: ignore[union-attr]
        assert [(i, e) for i, e, _ in history] == [("i00001", "view"), ("i00002", "add_to_cart"), ("i00003", "view")]
        assert client.portal.call(svc.state.history, "g")[0] == []  # type: ignore[union-attr]  # no item
        more = [{"user_id": "h", "item_id": f"i0000{k}", "event_type": "view", "event_id": f"h{k}",
                 "timestamp": t[k]} for k in (3, 4, 5)]
        assert client.post("/events", json={"events": more}).json() == {"accepted": 2, "duplicates": 1}
        history = client.portal.call(svc.state.history, "h")[0]  # type: ignore[union-attr]
        assert [i for i, _, _ in history] == ["i00002", "i00003", "i00004", "i00005"]  # the last 4
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    assert r.xlen(stream_key()) == 2  # one entry per batch with new events


# ---- kill -9 of real processes ---------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", **extra}


def _serve(bundle: Path, port: int, redis_url: str, store: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(bundle), "--port", str(port),
                             "--workers", "2", "--state", redis_url, "--store", store, *extra],
                            env=_env(AISLE_STREAM_CLAIM_IDLE_S="1"), stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: kill -9 takes the workers too


def _consume(redis_url: str, store: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "aisle", "consume", "--state", redis_url, "--store", store,
                             "--claim-idle", "1"], env=_env(), stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture(params=["duckdb", "postgresql"])
def kill_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield str(tmp_path / "live.duckdb")
        return
    from tests.pgserver import fresh_database, postgres_server

    with postgres_server() as server:
        yield fresh_database(server, "killed")


def _stored_at(store: str) -> pl.DataFrame:
    from aisle.store import open_store

    with open_store(store, read_only=True) as s:
        return s.events()


@pytest.mark.slow
def test_kill_9_of_api_workers_and_consumer_loses_no_acknowledged_event(bundle_dir: Path, tmp_path: Path,
                                                                        kill_store: str) -> None:
    """20,000 distinct events in batches of 50-100 to `aisle serve --workers 2` (Redis with appendfsync always, a
    DuckDB or PostgreSQL store) and a separate `aisle consume`; at a random moment both are killed with SIGKILL (the
    API's whole process group) and started again, later Redis is killed with SIGKILL and restarted from its AOF,
    and every batch that did not get a 2xx is posted again. At the end every acknowledged event is in the store
    exactly once."""
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"seed {seed}")
    port, rport = free_port(), free_port()
    (tmp_path / "redis").mkdir()
    redis_proc = start_redis(tmp_path / "redis", rport, fsync="always")
    redis_url = f"redis://127.0.0.1:{rport}/0"
    store = kill_store
    log = tmp_path / "procs.log"
    url = f"http://127.0.0.1:{port}"
    batches: list[list[dict[str, Any]]] = []
    n = 0
    while n < 20_000:
        size = min(rng.randint(50, 100), 20_000 - n)
        batches.append([{"user_id": f"u{(n + i) % 997}", "item_id": f"i{(n + i) % 150:05d}", "event_type": "view",
                         "event_id": f"k-{n + i}"} for i in range(size)])
        n += size
    kill_after = rng.randint(len(batches) // 5, 3 * len(batches) // 5)  # acknowledged batches before the kill
    redis_kill_after = rng.randint(kill_after + 10, 9 * len(batches) // 10)  # ... and before Redis is killed
    acked: set[str] = set()
    outcomes = {"2xx": 0, "failed": 0, "duplicates": 0}
    server = _serve(bundle_dir, port, redis_url, store, log)
    consumer = _consume(redis_url, store, log)
    try:
        wait_ready(url, server, seconds=90, output=log.read_text)
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=url, timeout=10) as http:
                pending = list(range(len(batches)))
                while pending and not stop.is_set():
                    left = []
                    for b in pending:
                        try:
                            resp = http.post("/events", json={"events": batches[b]})
                        except httpx.TransportError:
                            resp = None
                        if resp is not None and resp.status_code == 200:
                            outcomes["2xx"] += 1
                            outcomes["duplicates"] += resp.json()["duplicates"]
                            acked.update(e["event_id"] for e in batches[b])
                        else:
                            outcomes["failed"] += 1
                            left.append(b)
                            time.sleep(0.05)
                    pending = left

        t = threading.Thread(target=client)
        t0 = time.monotonic()
        t.start()
        while outcomes["2xx"] < kill_after and t.is_alive():
            time.sleep(0.005)
        _kill_group(server)
        _kill_group(consumer)
        killed_at = outcomes["2xx"]
        time.sleep(rng.uniform(0.2, 1.0))
        server = _serve(bundle_dir, port, redis_url, store, log)
        consumer = _consume(redis_url, store, log)
        while outcomes["2xx"] < redis_kill_after and t.is_alive():
            time.sleep(0.005)
        redis_proc.kill()  # SIGKILL: what appendfsync always synced before each answer must come back from the AOF
        redis_proc.wait(timeout=10)
        redis_killed_at = outcomes["2xx"]
        time.sleep(rng.uniform(0.2, 1.0))
        redis_proc = start_redis(tmp_path / "redis", rport, fsync="always")
        t.join(timeout=150)
        assert not t.is_alive(), f"posting did not finish: {outcomes}"
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        deadline = time.monotonic() + 60
        while r.xlen(stream_key()) and time.monotonic() < deadline:  # the stream holds the unacknowledged entries
            time.sleep(0.2)
        lag = r.xlen(stream_key())
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        print(f"API + consumer killed after {killed_at} acknowledged batches of {len(batches)}, Redis after "
              f"{redis_killed_at}; {outcomes}; lag {lag}; "
              f"{time.monotonic() - t0:.1f}s; " + "; ".join(ln for ln in metrics.splitlines()
                                                             if ln.startswith("aisle_stream_")))
        assert lag == 0
    finally:
        stop.set()
        for proc in (server, consumer):
            proc.send_signal(signal.SIGINT) if proc.poll() is None else None
        for proc in (server, consumer):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
    ids = _stored_at(store)["event_id"]
    assert len(acked) == 20_000
    missing = acked - set(ids.to_list())
    assert not missing, f"{len(missing)} acknowledged events are not in the store, e.g. {sorted(missing)[:5]}"
    assert ids.len() == ids.n_unique() == 20_000  # exactly once


def _children(pid: int) -> dict[int, bytes]:
    """The live child processes of `pid` and their command lines."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
    return out


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _consumer_pids(server: subprocess.Popen[bytes], n: int = 1, seconds: float = 60) -> list[int]:
    """The `n` consumer processes of `server` (once all are up), oldest first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = sorted(pid for pid, cmd in _children(server.pid).items() if b"aisle.serve.consumers" in cmd)
        assert len(found) <= n, found
        if len(found) == n:
            return found
        time.sleep(0.1)
    raise AssertionError(f"aisle serve does not run {n} consumer process(es)")


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "consumers"), [("duckdb", 1), ("postgresql", 2)])
def test_serve_consumes_in_supervised_processes_whose_kill_9_loses_nothing(
        bundle_dir: Path, tmp_path: Path, redis_url: str, backend: str, consumers: int) -> None:
    """`aisle serve --workers 2 --consumers N` with Redis and a store runs the stream consumers in N processes of
    their own (every consumer of the group is one of them, none a worker; with 2 both take entries); a kill -9 of
    one mid-load is followed by a new one, and what the dead one held is claimed: every acknowledged event is
    stored exactly once. A kill -9 of the server's parent process takes the consumer processes with it."""
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        store = str(tmp_path / "live.duckdb")
        if backend == "postgresql":
            from tests.pgserver import fresh_database, postgres_server

            store = fresh_database(stack.enter_context(postgres_server()), "consumers")
        _serve_and_kill_consumer(bundle_dir, port, url, redis_url, store, log, consumers)


def _serve_and_kill_consumer(bundle_dir: Path, port: int, url: str, redis_url: str, store: str, log: Path,
                             consumers: int) -> None:
    server = _serve(bundle_dir, port, redis_url, store, log, "--consumers", str(consumers))
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    acked: set[str] = set()
    try:
        wait_ready(url, server, seconds=90, output=log.read_text)
        pids = _consumer_pids(server, consumers)
        first = pids[0]
        batches = [[{"user_id": f"p{(b * 100 + i) % 97}", "item_id": f"i{i % 150:05d}", "event_type": "view",
                     "event_id": f"p-{b}-{i}"} for i in range(100)] for b in range(40)]
        with httpx.Client(base_url=url, timeout=10) as http:
            for b, batch in enumerate(batches):
                if b == 20:
                    os.kill(first, signal.SIGKILL)
                resp = http.post("/events", json={"events": batch})
                assert resp.status_code == 200, resp.text
                acked.update(e["event_id"] for e in batch)
            names = {c["name"] for c in r.xinfo_consumers(stream_key(), "aisle-store")}
        now = _consumer_pids(server, consumers, seconds=30)
        assert first not in now and len(set(now) - set(pids)) == 1  # the supervisor started another
        workers = [pid for pid, cmd in _children(server.pid).items() if b"spawn_main" in cmd]
        assert len(workers) == 2, _children(server.pid)
        assert {_nice(w) for w in workers} == {_nice(server.pid)}
        nicer = min(19, _nice(server.pid) + 5)  # background writing yields to the requests (`consumer_nice`)
        deadline = time.monotonic() + 30  # set by each consumer process itself once its imports are done
        while any(_nice(c) != nicer for c in now) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [_nice(c) for c in now] == [nicer] * consumers
        everyone = {*pids, *now}
        assert names and all(any(f"-{p}-" in n for p in everyone) for n in names), names  # no worker consumes
        assert all(any(f"-{p}-" in n for n in names) for p in pids[1:]), names  # the others read the group too
        deadline = time.monotonic() + 60
        while r.xlen(stream_key()) and time.monotonic() < deadline:  # what the dead one held is claimed after 1 s
            time.sleep(0.2)
        assert r.xlen(stream_key()) == 0
        server.send_signal(signal.SIGKILL)  # the parent alone: no consumer process may outlive it
        server.wait(timeout=10)
        for pid in now:
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.1)
            assert not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes()[:60]
    finally:
        _kill_group(server)
    ids = _stored_at(store)["event_id"]
    assert len(acked) == 4_000
    assert set(ids.to_list()) == acked and ids.len() == 4_000  # all of them, exactly once


# ---- erase reaches everywhere ------------------------------------------------------------------------------------


def _bundle_users(client: TestClient | httpx.Client, k: int) -> list[str]:
    return [u["user_id"] for u in client.get("/api/web/users", params={"k": k}).json()["users"]]


def _assert_not_in_redis(r: redis.Redis, users: list[str]) -> None:
    """No Redis key, nor any value of one, holds any of `users`, but the erasure records (ids only)."""
    for key in r.scan_iter("*"):
        if key in ("aisle:erased", "aisle:stream:erasures"):
            continue
        kind = r.type(key)
        value = {"string": lambda k: r.get(k), "list": lambda k: " ".join(r.lrange(k, 0, -1)),
                 "set": lambda k: " ".join(r.smembers(k)), "hash": lambda k: str(r.hgetall(k)),
                 "stream": lambda k: str(r.xrange(k))}.get(kind, lambda k: "")(key) or ""
        for user in users:
            assert user not in key and user not in value, (key, user)


def test_erase_with_two_workers_leaves_nothing_in_store_redis_stream_or_answers(bundle_dir: Path, tmp_path: Path,
                                                                                redis_url: str) -> None:
    """60 users post 3 events each through one worker (one with a search text, one without an event_id) and are
    erased through the other at once, before any consumer ran; then the stream is consumed. Nothing of them is
    in the store, in any Redis key or value but the erasure records, in the user list or in answers. (On the old
    code the erasing worker flushed only its own queue, and the duplicate-detection keys stayed for a week.)"""
    db = tmp_path / "live.duckdb"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    settings = Settings(bundle=bundle_dir, store=db, state=redis_url, consume=False)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        known = _bundle_users(a, 5)
        users = known + [f"erase-me-{i:02d}" for i in range(60 - len(known))]
        keep = "keep-me"
        for n, user in enumerate([*users, keep]):
            body = {"events": [
                {"user_id": user, "item_id": f"i{n % 150:05d}", "event_type": "view", "event_id": f"ev-{n}-1"},
                {"user_id": user, "item_id": f"i{(n + 1) % 150:05d}", "event_type": "add_to_cart"},
                {"user_id": user, "event_type": "search", "query": f"secret wish of {user}", "event_id": f"ev-{n}-3"}]}
            assert a.post("/events", json=body).json() == {"accepted": 3, "duplicates": 0}
            if user != keep:
                r_del = b.delete(f"/users/{user}")
                assert r_del.status_code == 200 and r_del.json()["live_events"] == 2, r_del.text
        sink = StoreSink(db)
        consumer = Consumer(redis_url, sink.locked, name="late")
        try:
            while r.xlen(stream_key()):
                consumer.step()
        finally:
            consumer.close()
            sink.close()
        assert r.xlen(stream_key()) == 0 and consumer.dropped == 3 * len(users)
        stored = _stored(db)
        assert stored["user_id"].to_list() == [keep] * 3  # the erased users' events were never written
        _assert_not_in_redis(r, users)
        assert set(r.smembers("aisle:erased")) == set(users)
        listed = _bundle_users(b, 50)
        assert not set(listed) & set(known) and listed
        for user in known:
            rec = a.get(f"/users/{user}/recommendations").json()
            assert rec["history_length"] == 0 and not rec["known_user"]
        # the erased events may come again (the keys that remembered them are gone) and are then new events
        again = {"events": [{"user_id": users[0], "item_id": "i00001", "event_type": "view", "event_id": "ev-0-1"}]}
        assert a.post("/events", json=again).json() == {"accepted": 1, "duplicates": 0}


def test_a_consumer_deletes_what_it_wrote_while_the_user_was_erased(bundle_dir: Path, tmp_path: Path,
                                                                     redis_url: str) -> None:
    """The race: a consumer read entries, checked erasures (none), and the erasure (recorded, then the store
    delete) happens before its write commits. Its check after the commit sees the erasure and deletes again."""
    from aisle.serve.stream import _ERASURE

    db = tmp_path / "live.duckdb"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    with TestClient(create_app(Settings(bundle=bundle_dir, store=db, state=redis_url, consume=False))) as client:
        assert client.post("/events", json=_events("racer", 4)).json()["accepted"] == 4
        assert client.post("/events", json=_events("other", 2)).json()["accepted"] == 2
    sink = StoreSink(db)

    class Racing:
        def __init__(self, store: Any) -> None:
            self.store = store

        def append_events(self, frame: pl.DataFrame, *, fresh: bool = False) -> Any:
            r.eval(_ERASURE, 2, stream_key(), "aisle:stream:erasures", "racer")  # DELETE /users/racer meanwhile
            return self.store.append_events(frame, fresh=fresh)

        def delete_user(self, user: str) -> int:
            return self.store.delete_user(user)

    @contextlib.contextmanager
    def racing() -> Iterator[Racing]:
        with sink.locked() as store:
            yield Racing(store)

    consumer = Consumer(redis_url, racing, name="racer")
    try:
        consumer.step()
    finally:
        consumer.close()
        sink.close()
    assert _stored(db)["user_id"].to_list() == ["other", "other"]


def _paced_rounds(redis_url: str, db: Path, trace: Path, write_s: float, monkeypatch: pytest.MonkeyPatch,
                  seconds: float = 3.0) -> list[dict[str, Any]]:
    """Run a consumer (`pace_s` 0.5) while an entry of 5 events arrives every 0.05 s for `seconds`, its store write
    taking at least `write_s`; return its trace lines (`AISLE_STREAM_TRACE`) of the events stream."""
    from aisle.serve.stream import TRACE_ENV, encode

    monkeypatch.setenv(TRACE_ENV, str(trace))
    r = redis.Redis.from_url(redis_url)
    sink = StoreSink(db)

    @contextlib.contextmanager
    def slow() -> Iterator[Any]:
        with sink.locked() as store:
            yield store
            time.sleep(write_s)  # a busy CPU or disk: the commit takes this long

    consumer = Consumer(redis_url, slow, name="paced", pace_s=0.5, block_ms=100)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        t0, k = time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            events = [{"event_id": f"p-{k}-{i}", "user_id": f"u{i}", "item_id": "i00001", "event_type": "view",
                       "timestamp": datetime.now(UTC)} for i in range(5)]
            r.xadd(stream_key(), {"e": b"[" + b",".join(encode(e) for e in events) + b"]"})
            k += 1
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while r.xlen(stream_key()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(15)
        consumer.close()
        sink.close()
        r.close()
    assert _stored(db).height == 5 * k  # every event stored once
    rounds = [json.loads(line) for line in trace.read_text().splitlines()]
    return [x for x in rounds if x["stream"] == "e"]


def test_a_consumer_paces_rounds_from_their_start_and_traces_each(tmp_path: Path, redis_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`pace_s` spaces the rounds' starts (fewer, larger store transactions) without adding a pause after a round
    that took longer: what arrived during a slow write is read at once. The trace has a line per round with the
    wall and CPU seconds of each part."""
    quick = _paced_rounds(redis_url, tmp_path / "quick.duckdb", tmp_path / "quick.jsonl", 0.0, monkeypatch)
    starts = [x["start"] for x in quick]
    assert len(quick) >= 3 and min(b - a for a, b in itertools.pairwise(starts)) >= 0.45
    assert all(0 <= x["pause"] <= 0.5 for x in quick) and any(x["pause"] > 0 for x in quick)
    parts = ("read", "prepare", "open", "append", "close", "erasures", "ack")
    assert all(x[p] >= 0 and x[f"{p}_cpu"] >= 0 for x in quick for p in parts)
    assert sum(x["events"] for x in quick) == sum(5 * x["entries"] for x in quick) == _stored(
        tmp_path / "quick.duckdb").height

    slow = _paced_rounds(redis_url, tmp_path / "slow.duckdb", tmp_path / "slow.jsonl", 0.7, monkeypatch)
    # each write takes 0.7 s > pace_s: the next round starts as soon as this one ended (a pause after it would
    # add 0.5 s to every gap)
    assert len(slow) >= 3 and all(x["close"] >= 0.7 and x["pause"] == 0 for x in slow)
    for this, after in itertools.pairwise(slow):
        assert after["start"] - this["start"] < sum(this[p] for p in parts) + 0.25


def test_without_redis_erase_runs_in_order_with_the_writes_before_it(bundle_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    with TestClient(create_app(Settings(bundle=bundle_dir, store=db))) as client:
        results: list[int] = []

        def post(k: int) -> None:
            results.append(client.post("/events", json=_events("gone", 10, start=10 * k)).status_code)

        threads = [threading.Thread(target=post, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 6
        r = client.delete("/users/gone")
        assert r.json()["stored_events"] == 60 and r.json()["live_events"] == 50  # history_length
        assert _stored(db).height == 0
        # its duplicate-detection marks went too: a repost of an erased event is a new event
        assert client.post("/events", json=_events("gone", 1)).json() == {"accepted": 1, "duplicates": 0}


def test_consumers_that_left_are_forgotten_by_the_group(redis_url: str, tmp_path: Path) -> None:
    """Every restart of a worker leaves its consumer name in the group; names holding nothing that were not heard
    of for forget_idle_s are removed (one holding entries stays: its entries are claimed first)."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    sink = StoreSink(tmp_path / "s.duckdb")
    c = Consumer(redis_url, sink.locked, name="now", block_ms=10, forget_idle_s=0.2)
    try:
        c.ensure_group()
        r.xreadgroup("aisle-store", "left", {stream_key(): ">"}, count=1)  # joined, took nothing, left
        r.xadd(stream_key(), {"x": "nobody"})
        r.xreadgroup("aisle-store", "holding", {stream_key(): ">"}, count=1)  # took an entry, died
        time.sleep(0.3)
        c.step()  # reads nothing (the one entry is held) ... and forgets "left"
        names = {x["name"] for x in r.xinfo_consumers(stream_key(), "aisle-store")}
        assert names == {"now", "holding"}
    finally:
        c.close()
        sink.close()


@pytest.mark.slow
def test_erase_through_the_other_of_two_real_workers_leaves_nothing(bundle_dir: Path, tmp_path: Path,
                                                                     kill_store: str) -> None:
    """Real processes: `aisle serve --workers 2` with Redis state and a store (DuckDB or PostgreSQL), and the
    server's stream consumer process. 60 users post 3 events each through one worker process and are erased through the
    other at once, while the consumers write; afterwards nothing of them is in the store, in Redis (but the
    erasure records), in the user list or in either worker's answers, and the shopper who was not erased keeps
    all 3 events."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with redis_server(tmp_path / "redis") as redis_url:
        proc = _serve(bundle_dir, port, redis_url, kill_store, log)
        try:
            wait_ready(url, proc, output=log.read_text)
            (pid_a, a), (pid_b, b) = clients_per_worker(url, 2, timeout=30).items()
            known = _bundle_users(a, 5)
            users = known + [f"erase-me-{i:02d}" for i in range(60 - len(known))]
            for n, user in enumerate([*users, "keep-me"]):
                body = {"events": [
                    {"user_id": user, "item_id": f"i{n % 150:05d}", "event_type": "view", "event_id": f"ev-{n}-1"},
                    {"user_id": user, "item_id": f"i{(n + 1) % 150:05d}", "event_type": "add_to_cart"},
                    {"user_id": user, "event_type": "search", "query": f"secret wish of {user}",
                     "event_id": f"ev-{n}-3"}]}
                posted = a.post("/events", json=body)
                assert posted.json() == {"accepted": 3, "duplicates": 0}
                assert int(posted.headers["x-aisle-worker"]) == pid_a
                if user != "keep-me":
                    erased = b.delete(f"/users/{user}")
                    assert erased.status_code == 200 and int(erased.headers["x-aisle-worker"]) == pid_b
            r = redis.Redis.from_url(redis_url, decode_responses=True)
            deadline = time.monotonic() + 60
            while r.xlen(stream_key()):  # the server's consumers drain the stream
                assert time.monotonic() < deadline, "the consumers did not drain the stream"
                time.sleep(0.2)
            stored = _stored_at(kill_store)
            assert not set(stored["user_id"].to_list()) & set(users)
            assert stored.filter(pl.col("user_id") == "keep-me").height == 3
            _assert_not_in_redis(r, users)
            r.close()
            for client in (a, b):
                listed = _bundle_users(client, 50)
                assert listed and not set(listed) & set(known)
                for user in known:
                    rec = client.get(f"/users/{user}/recommendations").json()
                    assert rec["history_length"] == 0 and not rec["known_user"]
            a.close()
            b.close()
        finally:
            _kill_group(proc)
