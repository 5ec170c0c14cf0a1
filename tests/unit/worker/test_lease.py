"""The training lease: one holder at a time; a holder that stops renewing (paused, killed) loses it after its ttl
and cannot then renew or release the lease someone else took; the store locks are held until released or until
their process (connection) dies."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisle.worker.lease import FileLease, PostgresLease, RedisLease
from tests.pgserver import postgres_server
from tests.redisserver import redis_server


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path / "redis", aof=False) as url:
        yield url


HOLDER = """
import sys, time
from aisle.worker.lease import {kind}
lease = {kind}(sys.argv[1]{ttl})
assert lease.acquire(block=False)
print("held", flush=True)
for line in sys.stdin:  # after each line: is it still ours? then try to release it
    print("still" if lease.held() else "lost", flush=True)
    lease.release()
    print("released", flush=True)
"""


@contextlib.contextmanager
def _holder(kind: str, url: str, ttl: str = "") -> Iterator[subprocess.Popen[str]]:
    """Another process holding a lease (`kind` from aisle.worker.lease), driven through its stdin and stdout."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(kind=kind, ttl=ttl), url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ,
                                                                    "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_redis_lease_one_holder_and_a_paused_holder_cannot_renew_or_release_the_next_ones(redis_url: str) -> None:
    mine = RedisLease(redis_url, ttl_s=0.6)
    with _holder("RedisLease", redis_url, ", ttl_s=0.6") as other:
        assert not mine.acquire(block=False)
        time.sleep(1.2)  # the other keeps renewing: still its lease well past the ttl
        assert not mine.acquire(block=False)
        os.kill(other.pid, signal.SIGSTOP)  # paused (a long GC, a stalled disk): no renewal
        time.sleep(1.2)
        assert mine.acquire(block=False) and mine.held()
        os.kill(other.pid, signal.SIGCONT)
        time.sleep(0.5)  # its renewal thread wakes up and tries
        assert other.stdin is not None and other.stdout is not None
        other.stdin.write("check\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "lost"  # it knows it lost the lease (and would not publish)
        assert other.stdout.readline().strip() == "released"
        assert mine.held() and mine.holder() == mine.token  # its renewal and release left this lease alone
    mine.release()
    assert mine.holder() is None


def test_redis_lease_a_waiting_worker_takes_over_within_the_ttl_of_a_kill_9(redis_url: str) -> None:
    mine = RedisLease(redis_url, ttl_s=0.5)
    with _holder("RedisLease", redis_url, ", ttl_s=0.5") as other:
        assert not mine.acquire(block=False)
        os.kill(other.pid, signal.SIGKILL)
        t0 = time.monotonic()
        assert mine.acquire(block=True, poll_s=0.05)
        assert time.monotonic() - t0 < 0.5 + 0.5
    mine.release()


def test_file_lease_is_exclusive_until_released(tmp_path: Path) -> None:
    a, b = FileLease(tmp_path / "shop.duckdb.worker-lease"), FileLease(tmp_path / "shop.duckdb.worker-lease")
    assert a.acquire(block=False) and not b.acquire(block=False)
    a.release()
    assert b.acquire(block=False) and b.held()
    b.release()


def test_postgres_lease_is_exclusive_and_dies_with_its_holder() -> None:
    with postgres_server() as url:
        mine = PostgresLease(url)
        with _holder("PostgresLease", url) as other:
            assert not mine.acquire(block=False)
            os.kill(other.pid, signal.SIGKILL)  # its session ends with it: the server releases the lock
            assert mine.acquire(block=True, poll_s=0.05) and mine.held()
        mine.release()
