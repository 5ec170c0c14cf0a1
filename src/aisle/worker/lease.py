"""The training lease: at most one `aisle worker` refreshes, refits and publishes in a deployment at a time.

Three kinds, picked from the settings by `open_lease`:

* `RedisLease` (the settings' `state` is Redis): `SET key token NX PX ttl`, renewed every ttl/3 by a Lua script that
  extends the key only while it still holds this worker's token, so a worker that was paused (GC, SIGSTOP, a
  slow disk) past the ttl cannot renew, nor release, a lease another worker has taken since. A worker killed with -9
  stops renewing; its key expires after ttl and a waiting worker takes it.
* `PostgresLease` (no Redis, a PostgreSQL store): a session advisory lock on one dedicated connection; the server
  releases it when the connection dies with its process.
* `FileLease` (no Redis, a DuckDB store or none): `flock` on a file beside the store (or in the registry); the
  kernel releases it when the process dies, however it dies.

Publishing checks `held()` first (the fence): a worker that lost its lease while it was fitting throws the
candidate away instead of publishing over the new holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Protocol

LEASE_KEY = "aisle:worker:lease"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLostError(RuntimeError):
    """This worker no longer holds the training lease (it expired while the worker was paused or cut off)."""


class Lease(Protocol):
    """Who may train now. `acquire(block=False)` is one try; `block=True` waits until it is ours."""

    def acquire(self, *, block: bool = True, poll_s: float = 1.0) -> bool: ...

    def held(self) -> bool: ...

    def holder(self) -> str | None: ...

    def release(self) -> None: ...


def _identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RedisLease:
    def __init__(self, url: str, *, ttl_s: float = 30.0, key: str = LEASE_KEY) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.key, self.ttl_ms = key, max(int(ttl_s * 1000), 100)
        self.token = _identity()
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, *, block: bool = True, poll_s: float = 1.0) -> bool:
        while True:
            if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
                self._lost.clear()
                self._stop.clear()
                self._thread = threading.Thread(target=self._keep, name="aisle-lease", daemon=True)
                self._thread.start()
                return True
            if not block:
                return False
            time.sleep(poll_s)

    def _keep(self) -> None:
        """Renew every ttl/3 while held; one failed renewal (the key is someone else's or gone) ends the lease."""
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                ok = bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
            except Exception:  # Redis unreachable: the key may expire meanwhile; the next renewal tells
                continue
            if not ok:
                self._lost.set()
                return

    def held(self) -> bool:
        """True while the key still holds our token (asked of Redis, not remembered)."""
        if self._lost.is_set() or self._thread is None:
            return False
        try:
            return self.client.get(self.key) == self.token.encode()
        except Exception:
            return False

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value is not None else None

    def release(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._release(keys=[self.key], args=[self.token])
        self._thread = None


class FileLease:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None

    def acquire(self, *, block: bool = True, poll_s: float = 1.0) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not block:
                    fh.close()
                    return False
                time.sleep(poll_s)
                continue
            fh.seek(0)
            fh.truncate()
            fh.write(_identity() + "\n")
            fh.flush()
            self._fh = fh
            return True

    def held(self) -> bool:
        return self._fh is not None

    def holder(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class PostgresLease:
    LOCK_ID = 0x61_69_73_6C_65_77  # "aislew"; the store's schema lock is "aisle"

    def __init__(self, url: str) -> None:
        self.url = url
        self._con: Any = None

    def acquire(self, *, block: bool = True, poll_s: float = 1.0) -> bool:
        import psycopg

        con = psycopg.connect(self.url, autocommit=True)
        while True:
            if con.execute("SELECT pg_try_advisory_lock(%s)", [self.LOCK_ID]).fetchone()[0]:
                self._con = con
                return True
            if not block:
                con.close()
                return False
            time.sleep(poll_s)

    def held(self) -> bool:
        if self._con is None:
            return False
        try:  # the lock lives as long as this session: a live connection still holds it
            self._con.execute("SELECT 1")
            return True
        except Exception:
            return False

    def holder(self) -> str | None:
        return None

    def release(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.execute("SELECT pg_advisory_unlock(%s)", [self.LOCK_ID])
                self._con.close()
            self._con = None


def open_lease(state: str, store: str | Path | None, registry: Path, *, ttl_s: float) -> Lease:
    """Redis when the deployment shares one (`state`), else a lock in the store (PostgreSQL advisory lock, a file
    lock beside a DuckDB file), else a file lock in the registry."""
    from aisle.store import is_postgres_url

    if state.startswith(("redis://", "rediss://", "unix://")):
        return RedisLease(state, ttl_s=ttl_s)
    if store is not None and is_postgres_url(str(store)):
        return PostgresLease(str(store))
    if store is not None:
        return FileLease(Path(f"{store}.worker-lease"))
    return FileLease(registry / ".worker-lease")


__all__ = ["LEASE_KEY", "FileLease", "Lease", "LeaseLostError", "PostgresLease", "RedisLease", "open_lease"]
