"""`Services`: what the routers call. Owns the live state, the current Runtime, hot swaps and the event sink.

Hot swap: a new bundle is loaded and its Runtime built in a worker thread while the old one keeps answering;
then one reference assignment swaps them (atomic under the GIL), so no request sees half a bundle and none
fails. A catalog upsert swaps in `Runtime.with_upserts` the same way, built in time proportional to the changed
items; every worker applies an upsert before it answers its next read (`catalog_fresh`: one Redis GET of the
catalog version per read; a newer version is applied first), so the items are searchable and recommendable on
every worker as soon as `PUT /items` has answered. The optional store (a DuckDB file under a file lock so several
processes can share it, or a PostgreSQL database: no lock, its unique event key keeps appends idempotent, one pooled
store per worker) receives accepted events durably before `POST /events` answers: written through (`StoreSink`,
memory state), or appended to the Redis event stream that consumers write to the store (`aisle.serve.stream`, Redis
state).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from starlette.concurrency import run_in_threadpool

from aisle.bundle import Bundle
from aisle.config import Settings
from aisle.experiments.arms import assign
from aisle.optimize.serving import optimize_pipeline
from aisle.registry import BUNDLE_CHANNEL, Registry, RegistryError, is_registry, notify
from aisle.serve.impressions import new_request_id
from aisle.serve.metrics import Metrics
from aisle.serve.runtime import Runtime
from aisle.serve.sink import StoreSink, StoreUnavailableError
from aisle.serve.state import LiveEvent, StateStore, open_state
from aisle.types import EVENT_SCHEMA

log = logging.getLogger("aisle.serve")


class NotReadyError(RuntimeError):
    """No bundle is loaded yet (or the last load failed)."""


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


class _Logged:
    """The impression log's `Policy` of one list whose propensities the runtime computed (an exploring list)."""

    def __init__(self, propensities: list[float]) -> None:
        self._p = propensities

    def propensities(self, n: int) -> list[float]:
        return self._p[:n]


class Services:
    def __init__(self, settings: Settings, *, state: StateStore | None = None, embedder: Any = None) -> None:
        self.settings = settings
        self.state = state or open_state(settings.state, settings.history_length)
        self.metrics = Metrics()
        self.sink = StoreSink(settings.store) if settings.store else None
        self.stream: Any = None  # Redis state and a store: accepted events go through the durable stream
        if self.sink is not None and self.state.backend == "redis":
            from aisle.serve.stream import EventStream

            self.stream = EventStream(self.state)
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
        # what this worker serves and follows: a registry's versions (`bundle` is a registry root) or one folder
        self.registry = Registry(settings.bundle, keep=settings.registry_keep) if is_registry(settings.bundle) \
            else None
        self.bundle_path = Path(settings.bundle)  # the folder loaded (a registry's version folder once loaded)
        self.registry_version: str | None = None  # the registry's name of the version served
        self.worker = f"{socket.gethostname()}:{os.getpid()}"  # tells this worker's own reload notices apart
        self.identity: list[tuple[bytes, bytes]] = [(b"x-aisle-worker", str(os.getpid()).encode())]
        self._loaded_key: str | None = None  # what was loaded: a registry version's name, or a manifest's mtime
        self._failed_key: str | None = None  # what failed to load: not tried again until a notice or a change
        self._notices: asyncio.Queue[dict[str, Any] | None] | None = None

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

    def load(self, path: Path | None = None, *, version: str | None = None) -> Runtime:
        """Load a bundle and swap it in (blocking; call from a thread). The old runtime serves until the swap,
        and keeps serving when the load fails (counted in `aisle_reloads_total{outcome="failed"}`, logged by the
        caller, `last_error` says why).

        What is loaded: `path`; else the registry's `version`; else what this worker follows: the registry's
        current version, or the bundle folder."""
        with self._swap:
            t0 = time.perf_counter()
            key: str | None = None
            try:
                if path is None and self.registry is not None:
                    version = version or self.registry.current()
                    if version is None:
                        raise RegistryError(f"the registry {self.registry.root} has no current version yet "
                                            "(publish one: aisle bundles publish, or run aisle worker)")
                    key, path = version, self.registry.path(version)
                else:
                    version = None
                path = Path(path or self.bundle_path)
                key = key or str(_mtime(path))
                bundle = Bundle.load(path, embedder=self.embedder, require_serving=True)
                bundle.pipeline = optimize_pipeline(bundle.pipeline, self.settings.inference)  # [inference]
                rt = self._build(bundle)
                arms = self._load_arms(rt, reload_bundles=True)
            except Exception as exc:
                self.metrics.reloads.labels("failed").inc()
                self.last_error = f"{path or version or self.bundle_path}: {type(exc).__name__}: {exc}"
                self._failed_key = key
                raise
            self._runtime, self._arms, self.bundle_path, self.registry_version = rt, arms, path, version
            self._loaded_key, self._failed_key, self.last_error = key, None, None
            # one list swapped whole: the middleware reads it on every response, never half of it
            self.identity = [(b"x-aisle-worker", str(os.getpid()).encode()),
                             (b"x-aisle-version", rt.version.encode("ascii", "replace"))]
            if self.settings.gc_freeze:
                settle_heap()
            self.metrics.reloads.labels("ok").inc()
            self.metrics.model_loaded(rt.version, version)
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
               offset: int = 0, propensities: list[float] | None = None) -> str:
        """Give a served list its request id (returned), put it and the arm in `out`, and log the impressions
        (with `propensities`, the exact ones of an exploring list, else the runtime policy's)."""
        rid = new_request_id()
        out["request_id"] = rid
        out["arm"] = arm
        if self.impressions is not None and shown:
            policy = rt.policy if propensities is None else _Logged(propensities)
            self.impressions.record(rid, surface, [i for i, _ in shown], [s for _, s in shown], policy=policy,
                                    user_id=user_id, session_id=session_id, model_version=rt.version, arm=arm,
                                    query=query, offset=offset)
        return rid

    def set_exploration(self, state: Any) -> None:
        """Explore from `state` (an `aisle.explore.ExploreState`) from the next request on, on every arm: what a
        simulation does between its refreshes (a served fleet gets the state in each bundle version instead)."""
        with self._swap:
            rt = self.runtime.with_exploration(state)
            arms = {name: rt if old is self._runtime else old.with_exploration(state)
                    for name, old in self._arms.items()}
            self._runtime, self._arms = rt, arms
            if self.settings.gc_freeze:  # like a catalog upsert's runtime: out of the full collections' walk
                gc.freeze()

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

    async def reload(self, path: Path | None = None, *, version: str | None = None) -> Runtime:
        return await run_in_threadpool(self.load, path, version=version)

    def describe(self) -> dict[str, Any]:
        """Which bundle this worker serves (`/health`): its pid, the bundle's version, the registry's name for it
        when following a registry, when it was loaded, and why the last load failed if it did."""
        rt = self._runtime
        return {"status": "ok", "pid": os.getpid(), "version": rt.version if rt else None,
                "registry_version": self.registry_version, "loaded_at": rt.loaded_at if rt else None,
                **({"load_error": self.last_error} if self.last_error else {})}

    # ---- following the registry (or the bundle folder) ---------------------------------------------------

    def follow_tasks(self) -> list[asyncio.Task[None]]:
        """Start following what this worker serves; the app's lifespan cancels the tasks at shutdown.

        Two ways a change reaches a worker: a notice on `BUNDLE_CHANNEL` (Redis state: every worker of every
        replica subscribes, `listen`) and polling (`follow_seconds` for a registry's `current`, `watch_seconds`
        for a bundle folder's manifest), the fallback when Redis is absent or a notice was missed."""
        self._notices = asyncio.Queue()
        every = self.settings.follow_seconds if self.registry is not None else self.settings.watch_seconds
        tasks = [asyncio.create_task(self.follow(every or None))]
        if self.state.backend == "redis":
            tasks.append(asyncio.create_task(self.listen()))
        return tasks

    async def follow(self, every_s: float | None) -> None:
        """Act on each notice, and poll every `every_s` seconds (None: notices only); one load at a time, in a
        thread, while the loaded runtime keeps answering."""
        assert self._notices is not None
        while True:
            try:
                async with asyncio.timeout(every_s):
                    notice = await self._notices.get()
            except TimeoutError:
                notice = None
            while notice is not None and not self._notices.empty():  # a burst of notices is one load, not many
                more = self._notices.get_nowait() or {}
                notice = {**notice, **more, "action": "reload" if "reload" in (notice.get("action"),
                                                                               more.get("action")) else "promote"}
            try:
                await run_in_threadpool(self._follow_step, notice)
            except Exception:  # an unreadable registry pointer: the next poll or notice tries again
                log.exception("following %s failed; keeping the loaded bundle",
                              self.registry.root if self.registry is not None else self.bundle_path)

    def _offered(self) -> str | None:
        """What the followed source offers now, in the terms of `_loaded_key`: the registry's current version
        name, or the bundle folder's manifest time; None when it offers nothing yet."""
        if self.registry is not None:
            return self.registry.current()
        m = _mtime(self.bundle_path)
        return str(m) if m else None

    def _follow_step(self, notice: dict[str, Any] | None) -> None:
        """Load what the registry (or folder) offers now when it is new. A poll skips what failed to load before
        (no tight loop over a broken version: it is retried at the next change or notice); a notice always tries,
        a "reload" notice even the version already served."""
        path = Path(notice["path"]) if notice and notice.get("path") and self.registry is None else None
        offered = self._offered()
        if notice is None:
            if offered is None or offered in (self._loaded_key, self._failed_key):
                return
        elif notice.get("action") != "reload" and offered is not None and offered == self._loaded_key:
            return  # a promotion of the version this worker already serves
        try:
            self.load(path)
        except Exception as exc:
            log.error("could not load %s (%s: %s); keeping %s", path or offered or self.bundle_path,
                      type(exc).__name__, exc, self._runtime.version if self._runtime else "nothing")

    async def listen(self) -> None:
        """Subscribe to `BUNDLE_CHANNEL` and queue every notice for `follow`; reconnects (with a growing pause, up
        to 5 s) when Redis goes away, and catches up once back (a notice sent meanwhile was lost)."""
        import redis.asyncio as aioredis

        assert self._notices is not None
        pause, missed = 0.5, False
        while True:
            client = aioredis.Redis.from_url(self.settings.state, socket_connect_timeout=5)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(BUNDLE_CHANNEL)
                if missed:
                    log.info("listening for bundle notices on %s again", BUNDLE_CHANNEL)
                    self._notices.put_nowait({"action": "promote", "version": None})  # catch up with the pointer
                pause, missed = 0.5, False
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        notice = json.loads(message["data"])
                        assert isinstance(notice, dict)
                    except (ValueError, AssertionError):
                        log.warning("ignored a malformed notice on %s: %r", BUNDLE_CHANNEL, message["data"][:200])
                        continue
                    if notice.get("sender") != self.worker:  # the worker that relayed a reload has loaded already
                        self._notices.put_nowait(notice)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not missed:
                    log.warning("bundle notices: lost %s (%s: %s); reconnecting, polling meanwhile", BUNDLE_CHANNEL,
                                type(exc).__name__, exc)
                missed = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def reload_everywhere(self, path: Path | None = None, *, version: str | None = None) -> dict[str, Any]:
        """`POST /admin/reload`: load here, then tell every worker of every replica (Redis). With `version` the
        registry's version is loaded here first and promoted only when it loaded (a broken one is never made
        current); then the notice goes out. Raises when the load here fails: the previous bundle keeps serving
        everywhere and nothing was promoted or relayed."""
        old = self._runtime.version if self._runtime else None
        if version is not None:
            assert self.registry is not None
            rt = await self.reload(version=version)
            try:
                await run_in_threadpool(self.registry.promote, version, reason="promoted through POST /admin/reload")
            except Exception:
                with contextlib.suppress(Exception):  # not promoted: serve the current version again
                    await self.reload()
                raise
            action = "promote"
        else:
            rt = await self.reload(path)
            action = "reload"
        requested = self.registry_version if self.registry is not None else str(self.bundle_path)
        notified: int | None = None
        if self.state.backend == "redis":
            folder = None if self.registry is not None else str(self.bundle_path)
            try:
                notified = await run_in_threadpool(notify, self.settings.state, action, self.registry_version,
                                                   sender=self.worker, path=folder)
            except Exception as exc:  # the others still follow a registry by polling; the answer says 0 were told
                log.warning("could not relay the reload through Redis: %s: %s", type(exc).__name__, exc)
                notified = 0
        return {"reloaded": True, "requested": requested, "loaded": True, "worker": os.getpid(),
                "previous_version": old, "model_version": rt.version, "registry_version": self.registry_version,
                "path": str(self.bundle_path), "notified": notified}

    async def sync_catalog(self) -> bool:
        """Apply catalog upserts made through another worker (Redis state); True when something changed."""
        async with self._sync:  # one catch-up at a time; a caller waits for the one in flight
            version, items = await self.state.items_since(self.catalog_version)
            if not items:
                return False
            await self._apply(items, version)
            return True

    async def catalog_fresh(self) -> None:
        """Before a read: apply upserts made through other workers since this one last looked (one GET of the
        catalog version; the upserts only when it moved). A failed check serves the catalog this worker has."""
        if self.state.backend != "redis" or self._runtime is None:
            return
        try:
            if await self.state.catalog_version() > self.catalog_version:
                await self.sync_catalog()
        except Exception as exc:
            log.warning("catalog version check failed (%s: %s); answering from the catalog this worker has",
                        type(exc).__name__, exc)

    async def shopper(self, user_id: str) -> tuple[list[Any], bool]:
        """The shopper's live history and erased mark, for a read under /users/{id}/: with Redis state read in the
        same round trip as the catalog version, whose upserts are applied first when it moved (what
        `catalog_fresh` does for the other reads; the middleware leaves these routes to this)."""
        live, erased, version = await self.state.history_at(user_id)
        if self.state.backend == "redis" and self._runtime is not None and version > self.catalog_version:
            try:
                await self.sync_catalog()
            except Exception as exc:
                log.warning("catalog sync failed (%s: %s); answering from the catalog this worker has",
                            type(exc).__name__, exc)
        return live, erased

    async def _apply(self, items: list[dict[str, Any]], version: int) -> None:
        """Swap in the runtime with `items` upserted (caller holds `_sync`), and record `version` as applied."""
        self.upserts.update({it["item_id"]: it for it in items})
        if self._runtime is not None:
            await run_in_threadpool(self._upsert_runtime, items)
        self.catalog_version = max(self.catalog_version, version)

    def _upsert_runtime(self, items: list[dict[str, Any]]) -> None:
        with self._swap:
            rt = self.runtime.with_upserts(items)
            # each arm's runtime takes the same delta (an arm without its own bundle and rules is the default one)
            arms = {name: rt if old is self._runtime else old.with_upserts(items) for name, old in self._arms.items()}
            self._runtime, self._arms = rt, arms
            if self.settings.gc_freeze:  # the new runtime's copies join the frozen bundle: no full collection walks
                gc.freeze()              # them (cheap: no collection here; see settle_heap)

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
                known = await self.state.peek_seen(keys, [e["user_id"] for e in events])
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
        if self.stream is None:  # the stream's script appended them to the live state already
            by_user: dict[str, list[LiveEvent]] = {}
            for e in fresh:
                if e.get("item_id"):
                    ts = int(e["timestamp"].timestamp() * 1_000_000)
                    by_user.setdefault(e["user_id"], []).append((e["item_id"], e["event_type"], ts))
            await self.state.append(by_user)
        self.metrics.ingested(len(fresh), len(events) - len(fresh))
        return {"accepted": len(fresh), "duplicates": len(events) - len(fresh)}

    def start_consumer(self) -> None:
        """Run stream consumers in threads of this process (Redis state, a store, `consume` on): one of the event
        stream, and one of the impression stream when impressions are logged. `aisle serve` runs them in a process
        of their own instead (`aisle.serve.consumers`), so they take no time from the requests."""
        from aisle.serve import consumers

        assert self.stream is not None and self.sink is not None
        self._consumer_stop.clear()
        self._consumers = consumers.start(self.settings, self.sink.locked, self._consumer_stop,
                                          streams=("events", "impressions") if self.impressions is not None
                                          else ("events",))

    def _stop_consumer(self) -> None:
        from aisle.serve import consumers

        consumers.stop_all(self._consumers, self._consumer_stop)
        self._consumers = []

    async def upsert_items(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        t0 = time.perf_counter()
        rt = self.runtime
        new = sum(1 for it in items if it["item_id"] not in rt.index)
        version = await self.state.put_items(items)
        async with self._sync:
            if version == self.catalog_version + 1:  # nothing from other workers in between: apply ours
                await self._apply(items, version)
            elif version > self.catalog_version:  # catch up on the others' upserts too, in version order
                current, since = await self.state.items_since(self.catalog_version)
                await self._apply(since, current)
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
        self.metrics.close()
        if self.settings.gc_freeze:
            gc.unfreeze()  # shutdown frees the bundle like any other object


def _mtime(path: Path) -> float:
    try:
        return (Path(path) / "manifest.json").stat().st_mtime
    except OSError:
        return 0.0


__all__ = ["NotReadyError", "Services", "StoreSink", "StoreUnavailableError"]
