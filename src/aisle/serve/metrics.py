"""Request metrics: Prometheus for scrapers, a rolling one-minute window as JSON for a dashboard.

Why both: Prometheus histograms are what operators alert on, but a browser dashboard wants "requests/s and
p99 right now" without running Prometheus. Under several uvicorn workers, `PROMETHEUS_MULTIPROC_DIR` (set by
`aisle serve`) makes /metrics sum every worker; the JSON window is per process and says which one.
"""

from __future__ import annotations

import gc
import os
import time
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.04, 0.06, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
WINDOW_S = 60.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        r = self.registry
        self.requests = Counter("aisle_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("aisle_request_seconds", "Request latency", ["route"], buckets=BUCKETS, registry=r)
        self.events = Counter("aisle_events_ingested", "Events posted to /events", ["outcome"], registry=r)
        self.items = Counter("aisle_items_upserted", "Items upserted through PUT /items", registry=r)
        # per worker: under PROMETHEUS_MULTIPROC_DIR "liveall" adds the pid label itself (and a dead worker's series
        # go with its file), in one process the label is ours; so /metrics has version, registry_version and pid
        self.model = Gauge("aisle_model_info", "The bundle this worker serves (value: when it was loaded, unix "
                           "seconds); 0 for a bundle it served before", ["version", "registry_version"]
                           + ([] if self.multiprocess else ["pid"]), registry=r, multiprocess_mode="liveall")
        self.reloads = Counter("aisle_reloads", "Bundle loads", ["outcome"], registry=r)
        self.impressions = Counter("aisle_impressions", "Impression rows: logged (buffered), written (to the store "
                                   "or the Redis stream), dropped (refused for too long)", ["outcome"], registry=r)
        # a collection of the older generations stops every thread of the worker: its pauses are part of the tail
        self.gc_pauses = Histogram("aisle_gc_pause_seconds", "Pauses of the cyclic garbage collector (generations 1 "
                                   "and 2; the young generation's are microseconds)", ["generation"],
                                   buckets=GC_BUCKETS, registry=r)
        self._gc_children = [self.gc_pauses.labels(str(g)) for g in (0, 1, 2)]
        self._gc_t0 = 0.0
        self.started = time.time()
        self._window: deque[tuple[float, str, float, int]] = deque()
        self._events: deque[tuple[float, int]] = deque()
        self._served: tuple[str, ...] | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        # the labelled children, looked up once per (route, method, status): `labels()` validates and locks
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)
        now = time.time()
        self._window.append((now, route, seconds * 1000.0, status))
        while self._window and self._window[0][0] < now - WINDOW_S:
            self._window.popleft()

    def ingested(self, accepted: int, duplicates: int) -> None:
        self.events.labels("accepted").inc(accepted)
        self.events.labels("duplicate").inc(duplicates)
        self._events.append((time.time(), accepted))

    def model_loaded(self, version: str, registry_version: str | None = None) -> None:
        """Mark `version` as the one this worker serves. A multiprocess gauge cannot drop a series (its value stays
        in the worker's file), so the one served before reads 0 there; in one process it is removed."""
        labels = (version, registry_version or "") + (() if self.multiprocess else (str(os.getpid()),))
        if self._served is not None and self._served != labels:
            if self.multiprocess:
                self.model.labels(*self._served).set(0)
            else:
                self.model.remove(*self._served)
        self.model.labels(*labels).set(time.time())
        self._served = labels

    def watch_gc(self) -> None:
        """Time the collector's pauses into `aisle_gc_pause_seconds` (until `close`)."""
        if self._gc_callback not in gc.callbacks:
            gc.callbacks.append(self._gc_callback)

    def _gc_callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 0:
            return
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self._gc_children[info["generation"]].observe(time.perf_counter() - self._gc_t0)

    def close(self) -> None:
        """At a worker's shutdown: drop its per-worker gauges from the shared multiprocess folder (a worker that
        is killed leaves them until the folder is cleared: `aisle serve` makes a fresh one at each start)."""
        if self._gc_callback in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    def render(self) -> bytes:
        if self.multiprocess:
            reg = CollectorRegistry()
            MultiProcessCollector(reg)
            return generate_latest(reg)
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """Requests/s, latency percentiles and errors per route over the last minute (this process)."""
        now = time.time()
        rows = [w for w in self._window if w[0] >= now - WINDOW_S]
        span = min(WINDOW_S, max(now - self.started, 1e-9))
        routes: dict[str, Any] = {}
        for route in sorted({r[1] for r in rows}):
            lat = np.array([r[2] for r in rows if r[1] == route])
            errors = sum(1 for r in rows if r[1] == route and r[3] >= 500)
            p50, p95, p99 = np.percentile(lat, [50, 95, 99])
            routes[route] = {"requests_per_s": round(len(lat) / span, 2), "p50_ms": round(float(p50), 2),
                             "p95_ms": round(float(p95), 2), "p99_ms": round(float(p99), 2), "errors": errors,
                             "client_errors": sum(1 for r in rows if r[1] == route and 400 <= r[3] < 500)}
        events = sum(n for t, n in self._events if t >= now - WINDOW_S)
        return {"process": os.getpid(), "window_s": WINDOW_S, "requests_per_s": round(len(rows) / span, 2),
                "errors": sum(1 for r in rows if r[3] >= 500), "events_per_min": round(events * 60.0 / span, 1),
                "routes": routes, "uptime_s": round(now - self.started, 1)}


__all__ = ["Metrics"]
