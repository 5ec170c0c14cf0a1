"""`Services`: what the routers call. Owns the live state, the current Runtime, hot swaps and the event sink.

Hot swap: a new bundle is loaded and its Runtime built in a worker thread while the old one keeps answering;
then one reference assignment swaps them (atomic under the GIL), so no request sees half a bundle and none
fails. The same path rebuilds the Runtime after catalog upserts (the search index is rebuilt with the cached
vectors of unchanged items). The optional store receives accepted events in batches from a background thread: a
DuckDB file under a file lock so several worker processes can share it, or a PostgreSQL database (no lock: the
server serialises writers and its unique event key keeps appends idempotent), through one pooled store per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from starlette.concurrency import run_in_threadpool

from aisle.bundle import Bundle
from aisle.config import Settings
from aisle.optimize.serving import optimize_pipeline
from aisle.serve.metrics import Metrics
from aisle.serve.runtime import Runtime
from aisle.serve.state import LiveEvent, StateStore, open_state
from aisle.types import EVENT_SCHEMA

log = logging.getLogger("aisle.serve")


class NotReadyError(RuntimeError):
    """No bundle is loaded yet (or the last load failed)."""


class StoreSink:
    """Accepted events -> the store, batched by a background thread (never on the request path)."""

    def __init__(self, path: Path | str, flush_s: float = 0.5) -> None:
        from aisle.store import describe, is_postgres_url

        self.postgres = is_postgres_url(str(path))
        self.url = str(path) if self.postgres else None
        self.path: Path | str = describe(path) if self.postgres else Path(path)  # what logs and /api/web show
        self.lock_path = None if self.postgres else Path(path).with_suffix(Path(path).suffix + ".lock")
        self.flush_s = flush_s
        self._pg: Any = None  # the open PostgreSQL store (a connection pool), made on first use
        self._pg_lock = threading.Lock()
        self._q: queue.Queue[pl.DataFrame | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="aisle-store-sink", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def locked(self) -> Any:
        from aisle.store import Store, open_store

        if self.url is not None:
            with self._pg_lock:
                if self._pg is None:
                    self._pg = open_store(self.url)
            yield self._pg
            return
        assert self.lock_path is not None
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                with Store(self.path) as store:
                    yield store
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def put(self, frame: pl.DataFrame) -> None:
        self._q.put(frame)

    def _drain(self) -> list[pl.DataFrame]:
        out = []
        while True:
            try:
                f = self._q.get_nowait()
            except queue.Empty:
                return out
            if f is not None:
                out.append(f)

    def flush(self) -> int:
        frames = self._drain()
        if not frames:
            return 0
        with self.locked() as store:
            return store.append_events(pl.concat(frames)).inserted

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                self.flush()
                return
            self._q.put(first)
            time.sleep(self.flush_s)
            try:
                self.flush()
            except Exception:
                log.exception("could not write events to %s (will retry)", self.path)

    def erase(self, user_id: str) -> int:
        self.flush()
        with self.locked() as store:
            return store.delete_user(user_id)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=10)
        with self._pg_lock:
            if self._pg is not None:
                self._pg.close()
                self._pg = None


def settle_heap() -> None:
    """Collect once, then move every object alive now (the loaded bundle, the imported libraries) out of the
    garbage collector's reach (`gc.freeze`).

    Why: a 100,000-item bundle is ~400,000 tracked Python objects, and every full collection walked all of them:
    a 400 ms pause of the worker (measured on that bundle), repeatedly under load, the worst of the load
    benchmark's tail. The previous bundle's frozen objects are unfrozen first, so what it leaves behind is collected
    now rather than kept for ever."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Services:
    def __init__(self, settings: Settings, *, state: StateStore | None = None, embedder: Any = None) -> None:
        self.settings = settings
        self.state = state or open_state(settings.state, settings.history_length)
        self.metrics = Metrics()
        self.sink = StoreSink(settings.store) if settings.store else None
        self._embedder = embedder
        self._runtime: Runtime | None = None
        self._swap = threading.Lock()
        self._sync = asyncio.Lock()
        self.catalog_version = 0
        self.upserts: dict[str, dict[str, Any]] = {}
        self.last_error: str | None = None
        self.bundle_path = Path(settings.bundle)
        self._manifest_mtime = 0.0

    # ---- the current runtime -------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        rt = self._runtime
        if rt is None:
            raise NotReadyError(self.last_error or "no bundle loaded yet")
        return rt

    @property
    def ready(self) -> bool:
        return self._runtime is not None

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from aisle.optimize.serving import query_embedder

            self._embedder = query_embedder(self.settings.inference)  # [inference] query_encoder
        return self._embedder

    def load(self, path: Path | None = None) -> Runtime:
        """Load a bundle and swap it in (blocking; call from a thread). The old runtime serves until the swap."""
        with self._swap:
            path = Path(path or self.bundle_path)
            t0 = time.perf_counter()
            try:
                bundle = Bundle.load(path, embedder=self.embedder, require_serving=True)
                bundle.pipeline = optimize_pipeline(bundle.pipeline, self.settings.inference)  # [inference]
                rt = self._build(bundle)
            except Exception as exc:
                self.metrics.reloads.labels("failed").inc()
                self.last_error = f"{path}: {type(exc).__name__}: {exc}"
                raise
            self._runtime, self.bundle_path = rt, path
            self._manifest_mtime = _mtime(path)
            if self.settings.gc_freeze:
                settle_heap()
            self.metrics.reloads.labels("ok").inc()
            self.metrics.model_loaded(rt.version)
            log.info("loaded bundle %s (%s) in %.1fs", path, rt.version, time.perf_counter() - t0)
            return rt

    def _build(self, bundle: Bundle) -> Runtime:
        return Runtime(bundle, self.settings, list(self.upserts.values()), embedder=self.embedder)

    async def reload(self, path: Path | None = None) -> Runtime:
        return await run_in_threadpool(self.load, path)

    async def watch(self) -> None:
        """Reload when the bundle folder's manifest changes (Settings.watch_seconds > 0)."""
        while True:
            await asyncio.sleep(self.settings.watch_seconds)
            m = _mtime(self.bundle_path)
            if m and m != self._manifest_mtime:
                try:
                    await self.reload()
                except Exception:
                    log.exception("hot swap from %s failed; keeping the loaded bundle", self.bundle_path)

    async def sync_catalog(self) -> bool:
        """Apply catalog upserts made through another worker (Redis state); True when something changed."""
        async with self._sync:  # one rebuild at a time; a caller waits for the one in flight
            version, items = await self.state.items_since(self.catalog_version)
            if not items:
                return False
            self.upserts.update({it["item_id"]: it for it in items})
            if self._runtime is not None:
                await run_in_threadpool(self._rebuild_runtime)
            self.catalog_version = version
            return True

    def _rebuild_runtime(self) -> None:
        with self._swap:
            rt = self._build(self.runtime.bundle)
            self._runtime = rt

    async def poll_catalog(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sync_catalog()
            except Exception:
                log.exception("catalog sync failed")

    # ---- writes --------------------------------------------------------------------------------------

    async def ingest(self, events: list[dict[str, Any]]) -> dict[str, int]:
        keys = [e.get("event_id") or "|".join(str(e.get(f) or "") for f in ("user_id", "item_id", "event_type",
                                                                            "timestamp", "query")) for e in events]
        seen = await self.state.mark_seen(keys)
        fresh = [e for e, dup in zip(events, seen, strict=True) if not dup]
        by_user: dict[str, list[LiveEvent]] = {}
        for e in fresh:
            if e.get("item_id"):
                ts = int(e["timestamp"].timestamp() * 1_000_000)
                by_user.setdefault(e["user_id"], []).append((e["item_id"], e["event_type"], ts))
        await self.state.append(by_user)
        if self.sink is not None and fresh:
            self.sink.put(pl.DataFrame(fresh, schema=EVENT_SCHEMA))
        self.metrics.ingested(len(fresh), len(events) - len(fresh))
        return {"accepted": len(fresh), "duplicates": len(events) - len(fresh)}

    async def upsert_items(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        t0 = time.perf_counter()
        rt = self.runtime
        new = sum(1 for it in items if it["item_id"] not in rt.index)
        self.upserts.update({it["item_id"]: it for it in items})
        self.catalog_version = await self.state.put_items(items)
        await run_in_threadpool(self._rebuild_runtime)
        if self.settings.store is not None:
            await run_in_threadpool(self._store_items, items)
        self.metrics.items.inc(len(items))
        return {"upserted": len(items), "new": new, "catalog_version": self.catalog_version,
                "took_ms": round((time.perf_counter() - t0) * 1000, 1)}

    def _store_items(self, items: list[dict[str, Any]]) -> None:
        from aisle.types import ITEM_SCHEMA, conform

        assert self.sink is not None
        frame = conform(pl.DataFrame(items, schema_overrides={"categories": pl.List(pl.String)}, strict=False),
                        ITEM_SCHEMA)
        with self.sink.locked() as store:
            store.upsert_items(frame)

    async def erase(self, user_id: str) -> dict[str, Any]:
        live = await self.state.erase(user_id)
        stored = await run_in_threadpool(self.sink.erase, user_id) if self.sink is not None else None
        return {"user_id": user_id, "erased": True, "live_events": live, "stored_events": stored,
                "erased_at": datetime.now(UTC).isoformat(timespec="seconds")}

    async def close(self) -> None:
        if self.sink is not None:
            await run_in_threadpool(self.sink.close)
        await self.state.close()
        if self.settings.gc_freeze:
            gc.unfreeze()  # shutdown frees the bundle like any other object


def _mtime(path: Path) -> float:
    try:
        return (Path(path) / "manifest.json").stat().st_mtime
    except OSError:
        return 0.0


__all__ = ["NotReadyError", "Services", "StoreSink"]
