"""`StoreSink`: the serving processes' writes to the store (events, impressions, erasures), one writer thread per
process. Its own module so that a process which only writes to the store (`aisle consume`, the worker's appends)
does not import the serving runtime (the pipeline, torch)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import polars as pl

log = logging.getLogger("aisle.serve")


class StoreUnavailableError(RuntimeError):
    """The store (or the event stream) did not take a write: the request answers 503 and may be retried."""


class StoreSink:
    """The server's writes to the store: accepted events written through before the request answers (no Redis),
    catalog upserts and erasures.

    Events of concurrent requests are committed together (group commit): one writer thread takes every batch
    waiting, appends them in one store transaction and then wakes each request; a failed append fails every
    request of that commit (each answers 503 and can be retried: appends are idempotent by event key)."""

    def __init__(self, path: Path | str, *, threads: int | None = None) -> None:
        """`threads`: DuckDB's threads per opened store (`Store`); default one per core."""
        from aisle.store import describe, is_postgres_url

        self.threads = threads
        self.postgres = is_postgres_url(str(path))
        self.url = str(path) if self.postgres else None
        self.path: Path | str = describe(path) if self.postgres else Path(path)  # what logs and /api/web show
        self._pg: Any = None  # the open PostgreSQL store (a connection pool), made on first use
        self._pg_lock = threading.Lock()
        self._q: queue.Queue[tuple[str, Any, Future[int]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="aisle-store-writer", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def locked(self) -> Any:
        """The store, for one unit of work: a DuckDB file is opened under its file lock (so worker processes and
        `aisle consume` share it), a PostgreSQL store is one pool per process."""
        from aisle.store import Store, open_store
        from aisle.store.embedded import store_lock

        if self.url is not None:
            with self._pg_lock:
                if self._pg is None:
                    self._pg = open_store(self.url)
            yield self._pg
            return
        with store_lock(self.path), Store(self.path, threads=self.threads) as store:
            yield store

    def write(self, frame: pl.DataFrame) -> Future[int]:
        """Queue `frame` for the next commit; the future is done once it is in the store (or failed)."""
        fut: Future[int] = Future()
        self._q.put(("append", frame, fut))
        return fut

    async def append(self, frame: pl.DataFrame) -> None:
        """Append `frame` to the store and return once it is committed; raises StoreUnavailableError if not."""
        try:
            await asyncio.wrap_future(self.write(frame))
        except Exception as exc:
            raise StoreUnavailableError(f"the store {self.path} did not take the events: {type(exc).__name__}: "
                                        f"{exc}") from exc

    def flush(self) -> int:
        """Nothing is ever queued past a request's answer (writes are through): kept for callers; returns 0."""
        return 0

    def _run(self) -> None:
        pending: list[Any] = []  # taken from the queue, not yet done (an erase or the stop behind a group)
        while True:
            op = pending.pop(0) if pending else self._q.get()
            if op is None:
                return
            if op[0] == "erase":
                self._erase(op[1], op[2])
                continue
            if op[0] == "impressions":
                self._impressions(op[1], op[2])
                continue
            batch = [op]
            while True:
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is None or more[0] != "append":
                    pending.append(more)  # it runs after this group, in order
                    break
                batch.append(more)
            self._append(batch)

    def _append(self, batch: list[Any]) -> None:
        try:
            with self.locked() as store:
                store.append_events(pl.concat([f for _, f, _ in batch]))
        except Exception as exc:
            log.warning("could not write %d event batch(es) to %s: %s: %s", len(batch), self.path,
                        type(exc).__name__, exc)
            for _, _, fut in batch:
                fut.set_exception(exc)
        else:
            for _, frame, fut in batch:
                fut.set_result(frame.height)

    def _erase(self, user_id: str, fut: Future[int]) -> None:
        try:
            with self.locked() as store:
                deleted = store.delete_user(user_id)
        except Exception as exc:
            fut.set_exception(exc)
        else:  # answered only once the store is closed again, as appends are: a reader may open it right after
            fut.set_result(deleted)

    def _impressions(self, frame: pl.DataFrame, fut: Future[int]) -> None:
        try:
            with self.locked() as store:
                store.append_impressions(frame)
        except Exception as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(frame.height)

    def write_impressions(self, frame: pl.DataFrame) -> None:
        """Append impression rows to the store, in turn with the event writes (blocking: the impression log's
        flush thread calls it, never a request)."""
        fut: Future[int] = Future()
        self._q.put(("impressions", frame, fut))
        fut.result(timeout=120)

    def erase(self, user_id: str) -> int:
        """Delete the user from the store, in order with the event writes queued before (blocking)."""
        fut: Future[int] = Future()
        self._q.put(("erase", user_id, fut))
        return fut.result(timeout=120)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=10)
        with self._pg_lock:
            if self._pg is not None:
                self._pg.close()
                self._pg = None
