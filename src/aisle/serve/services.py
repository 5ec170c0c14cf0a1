"""`Services`: what the routers call. Owns the live state, the current Runtime, hot swaps and the event sink.

Hot swap: a new bundle is loaded and its Runtime built in a worker thread while the old one keeps answering;
then one reference assignment swaps them (atomic under the GIL), so no request sees half a bundle and none
fails. The same path rebuilds the Runtime after catalog upserts (the search index is rebuilt with the cached
vectors of unchanged items). The optional store (a DuckDB file under a file lock so several processes can share
it, or a PostgreSQL database: no lock, its unique event key keeps appends idempotent, one pooled store per worker)
receives accepted events durably before `POST /events` answers: written through (`StoreSink`, memory state), or
appended to the Redis event stream that consumers write to the store (`aisle.serve.stream`, Redis state).
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
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from starlette.concurrency import run_in_threadpool

from aisle.bundle import Bundle
from aisle.config import Settings
from aisle.experiments.arms import assign
from aisle.optimize.serving import optimize_pipeline
from aisle.serve.impressions import new_request_id
from aisle.serve.metrics import Metrics
from aisle.serve.runtime import Runtime
from aisle.serve.state import LiveEvent, StateStore, open_state
from aisle.types import EVENT_SCHEMA

log = logging.getLogger("aisle.serve")


class NotReadyError(RuntimeError):
    """No bundle is loaded yet (or the last load failed)."""


class StoreUnavailableError(RuntimeError):
    """The store (or the event stream) did not take a write: the request answers 503 and may be retried."""


class StoreSink:
    """The server's writes to the store: accepted events written through before the request answers (no Redis),
    catalog upserts and erasures.

    Events of concurrent requests are committed together (group commit): one writer thread takes every batch
    waiting, appends them in one store transaction and then wakes each request; a failed append fails every
    request of that commit (each answers 503 and can be retried: appends are idempotent by event key)."""

    def __init__(self, path: Path | str) -> None:
        from aisle.store import describe, is_postgres_url

        self.postgres = is_postgres_url(str(path))
        self.url = str(path) if self.postgres else None
        self.path: Path | str = describe(path) if self.postgres else Path(path)  # what logs and /api/web show
        self.lock_path = None if self.postgres else Path(path).with_suffix(Path(path).suffix + ".lock")
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
        self.stream: Any = None  # Redis state and a store: accepted events go through the durable stream
        if self.sink is not None and self.state.backend == "redis":
            from aisle.serve.stream import EventStream

            st: Any = self.state
            self.stream = EventStream(st.r, st.p)
        self._consumers: list[tuple[Any, threading.Thread]] = []
        self._consumer_stop = threading.Event()
        self.impressions = self._impression_log() if settings.impressions and self.sink is not None else None
        self._arms: dict[str, Runtime] = {}  # experiment arm -> the runtime that serves it
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
                arms = self._load_arms(rt, reload_bundles=True)
            except Exception as exc:
                self.metrics.reloads.labels("failed").inc()
                self.last_error = f"{path}: {type(exc).__name__}: {exc}"
                raise
            self._runtime, self._arms, self.bundle_path = rt, arms, path
            self._manifest_mtime = _mtime(path)
            if self.settings.gc_freeze:
                settle_heap()
            self.metrics.reloads.labels("ok").inc()
            self.metrics.model_loaded(rt.version)
            log.info("loaded bundle %s (%s) in %.1fs", path, rt.version, time.perf_counter() - t0)
            return rt

    def _build(self, bundle: Bundle, settings: Settings | None = None) -> Runtime:
        return Runtime(bundle, settings or self.settings, list(self.upserts.values()), embedder=self.embedder)

    # ---- experiments and the impression log ---------------------------------------------------------------

    def _load_arms(self, default: Runtime, reload_bundles: bool) -> dict[str, Runtime]:
        """A Runtime per experiment arm: the arm's own bundle (loaded beside the default one: its memory too) or
        the default bundle, under the arm's rule settings. `reload_bundles` False reuses the arms' loaded
        bundles (a catalog upsert rebuilds the runtimes, not the bundles)."""
        exp = self.settings.experiment
        if exp is None:
            return {}
        out = {}
        for arm in exp.arms:
            settings = self.settings.arm_settings(arm)
            if arm.bundle is None:
                out[arm.name] = default if settings is self.settings else self._build(default.bundle, settings)
                continue
            old = self._arms.get(arm.name)
            if old is not None and not reload_bundles:
                bundle = old.bundle
            else:
                bundle = Bundle.load(arm.bundle, embedder=self.embedder, require_serving=True)
                bundle.pipeline = optimize_pipeline(bundle.pipeline, self.settings.inference)
            out[arm.name] = self._build(bundle, settings)
        return out

    @property
    def arms(self) -> dict[str, Runtime]:
        """The runtime serving each experiment arm (empty outside an experiment or before a bundle loads)."""
        return dict(self._arms)

    def serving(self, user_id: str | None, session_id: str | None) -> tuple[str | None, Runtime]:
        """The experiment arm of this shopper (by user id, else session id; None outside an experiment or for a
        request naming neither) and the runtime that serves it."""
        exp = self.settings.experiment
        shopper = user_id or session_id
        if exp is None or not shopper:
            return None, self.runtime
        arm = assign(shopper, exp).name
        rt = self._arms.get(arm)
        return (arm, rt) if rt is not None else (None, self.runtime)

    def served(self, surface: str, rt: Runtime, out: dict[str, Any], shown: list[tuple[str, float | None]], *,
               arm: str | None, user_id: str | None, session_id: str | None, query: str | None = None,
               offset: int = 0) -> str:
        """Give a served list its request id (returned), put it and the arm in `out`, and log the impressions."""
        rid = new_request_id()
        out["request_id"] = rid
        out["arm"] = arm
        if self.impressions is not None and shown:
            self.impressions.record(rid, surface, [i for i, _ in shown], [s for _, s in shown], policy=rt.policy,
                                    user_id=user_id, session_id=session_id, model_version=rt.version, arm=arm,
                                    query=query, offset=offset)
        return rid

    def _impression_log(self) -> Any:
        from aisle.serve.impressions import ImpressionLog, to_frame

        write: Any
        if self.stream is not None:  # Redis state: into the stream `aisle:impressions`, consumed into the store
            write = self._impressions_to_stream()
        else:
            sink = self.sink
            assert sink is not None

            def write(served: list[Any]) -> None:
                sink.write_impressions(to_frame(served))
        return ImpressionLog(write, flush_s=self.settings.impressions_flush_s, counter=self.metrics.impressions)

    def _impressions_to_stream(self) -> Any:
        import redis

        from aisle.serve.impressions import IMPRESSIONS_STREAM, encode

        r = redis.Redis.from_url(self.settings.state, socket_timeout=5.0, socket_connect_timeout=5.0)
        key = f"{self.stream.p}{IMPRESSIONS_STREAM}"

        def write(served: list[Any]) -> None:
            r.xadd(key, {"i": encode(served)})

        return write

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
            self._runtime, self._arms = rt, self._load_arms(rt, reload_bundles=False)

    async def poll_catalog(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sync_catalog()
            except Exception:
                log.exception("catalog sync failed")

    # ---- writes --------------------------------------------------------------------------------------

    async def ingest(self, events: list[dict[str, Any]]) -> dict[str, int]:
        """Accept a batch: new events (by key) reach the live state and, with a store, are durable before this
        returns. With Redis they are appended to the event stream in the same atomic step that marks them seen;
        without, they are written through to the store before they are marked seen. Either way an event whose
        write failed is not marked, and `StoreUnavailableError` (a 503) lets the client retry it."""
        keys = [e.get("event_id") or "|".join(str(e.get(f) or "") for f in ("user_id", "item_id", "event_type",
                                                                            "timestamp", "query")) for e in events]
        if self.stream is not None:
            try:
                seen = await self.stream.publish(keys, events)
            except Exception as exc:
                self.metrics.events.labels("failed").inc(len(events))
                raise StoreUnavailableError(f"the event stream did not take the events: {type(exc).__name__}: "
                                            f"{exc}") from exc
        else:
            if self.sink is not None:
                known = await self.state.peek_seen(keys)
                new = [e for e, dup in zip(events, known, strict=True) if not dup]
                if new:
                    try:
                        await self.sink.append(pl.DataFrame(new, schema=EVENT_SCHEMA))
                    except StoreUnavailableError:
                        self.metrics.events.labels("failed").inc(len(events))
                        raise
            # after the write: a failed one leaves nothing marked
            seen = await self.state.mark_seen(keys, [e["user_id"] for e in events])
        fresh = [e for e, dup in zip(events, seen, strict=True) if not dup]
        by_user: dict[str, list[LiveEvent]] = {}
        for e in fresh:
            if e.get("item_id"):
                ts = int(e["timestamp"].timestamp() * 1_000_000)
                by_user.setdefault(e["user_id"], []).append((e["item_id"], e["event_type"], ts))
        await self.state.append(by_user)
        self.metrics.ingested(len(fresh), len(events) - len(fresh))
        return {"accepted": len(fresh), "duplicates": len(events) - len(fresh)}

    def start_consumer(self) -> None:
        """Run stream consumers in threads of this worker (Redis state, a store, `consume` on): one of the event
        stream, and one of the impression stream when impressions are logged."""
        from aisle.serve.stream import Consumer

        assert self.stream is not None and self.sink is not None
        self._consumer_stop.clear()
        for stream in ("events", "impressions") if self.impressions is not None else ("events",):
            consumer = Consumer(self.settings.state, self.sink.locked, claim_idle_s=self.settings.stream_claim_idle_s,
                                stream=stream, pace_s=self.settings.impressions_store_s if stream == "impressions"
                                else 0.0, count=200 if stream == "events" else 1_000)
            thread = threading.Thread(target=consumer.run, args=(self._consumer_stop,),
                                      name=f"aisle-{stream}-consumer", daemon=True)
            thread.start()
            self._consumers.append((consumer, thread))

    def _stop_consumer(self) -> None:
        self._consumer_stop.set()
        for _, thread in self._consumers:
            thread.join(timeout=15)
        for consumer, _ in self._consumers:
            consumer.close()
        self._consumers = []

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
        """Erase the user everywhere: the stream's consumers are told first (they drop the user's events of every
        entry before this point, and delete again what they were writing meanwhile), then the live state (history,
        duplicate-detection keys; erased from now on), then the store."""
        if self.stream is not None:
            try:
                await self.stream.record_erasure(user_id)
            except Exception as exc:
                raise StoreUnavailableError(f"the erasure could not be recorded in the event stream: "
                                            f"{type(exc).__name__}: {exc}") from exc
        live = await self.state.erase(user_id)
        stored = await run_in_threadpool(self.sink.erase, user_id) if self.sink is not None else None
        return {"user_id": user_id, "erased": True, "live_events": live, "stored_events": stored,
                "erased_at": datetime.now(UTC).isoformat(timespec="seconds")}

    async def close(self) -> None:
        if self.impressions is not None:  # flushed first: to the store, or to the stream the consumers still read
            await run_in_threadpool(self.impressions.close)
        await run_in_threadpool(self._stop_consumer)
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


__all__ = ["NotReadyError", "Services", "StoreSink", "StoreUnavailableError"]
