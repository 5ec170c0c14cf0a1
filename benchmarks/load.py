"""Load benchmark of the serving API: open-loop requests at a fixed rate on loopback, bounded in time.

    .venv/bin/python benchmarks/load.py --bundle BUNDLE --workers 2 --rec-rate 500 --search-rate 200

Starts `aisle serve` (N uvicorn workers, live state in a redis-server it starts itself unless --state memory; with
`--store new` an empty DuckDB store that events and the impression log reach, `--impressions off` without the log),
then for each phase sends requests at a fixed arrival rate for `--seconds` and reports achieved requests/s,
latency percentiles, errors, and the CPU cores each part used (server, redis, this client). Latency is
measured from each request's *scheduled* send time, so a stalled server or client counts against it (no
coordinated omission). The client is a minimal asyncio HTTP/1.1 client over a pool of keep-alive connections,
on uvloop: it runs on the same 2 cores as the server, so it must be cheap. Each answer's latency is split into the
client's own delay (its event loop, then a free connection), the app's time (the server's `Server-Timing` header)
and the rest outside both (sockets, the worker's event loop before it reads the request, waiting for a CPU), with
each process's mean wait for a CPU per run beside the cores it used: where a tail far above the handler's goes.

Phases: `recs` GET /users/{random known user}/recommendations (k=10) while `--event-rate` events/s are posted
for random users, so part of the traffic is shoppers whose live state changed; `search` GET /search with
queries drawn from the store's own search log (its real repeats: the per-bundle result cache answers repeats);
`search-distinct` every query different (no cache can help), at `--distinct-rate`.

Closed loop (the serving throughput ceiling): `closed` keeps `--closed-connections` (32) connections busy, each
sending its next GET /users/{random known user}/recommendations?k=10 as soon as the previous answer arrived, for
`--closed-seconds` after a 2-second warm-up, and reports requests/s, p50/p99 and errors. It runs first, before
`recs` posts events, so every shopper is answered as a new user of the bundle would be. `noop-closed` does the same
against a no-op peer: a minimal FastAPI app with the same route and query parameters that returns a fixed answer of
the same shape (10 cards), under uvicorn with the same workers, loop (uvloop) and HTTP protocol (httptools, one
write per answer: `aisle.serve.http`) as `aisle serve`, started after Aisle is stopped; with both phases the ratio
Aisle / no-op is printed. The closed-loop client is an asyncio Protocol over raw sockets (~30 us of CPU per
request) but it shares the machine's cores with the server: its CPU share is reported, and it weighs more on the
faster peer. Beside requests/s each closed loop reports the workers' CPU milliseconds per request, which moves less
than requests/s when other jobs share the cores. Its connections are opened one by one (at once, one worker may
accept them all). `--profile PREFIX` samples each worker with py-spy during the measured closed loop into
PREFIX.<pid>.txt (collapsed stacks, one line per stack and its count), to attribute a request's CPU by function.

    .venv/bin/python benchmarks/load.py --bundle BUNDLE --workers 2 --phases closed,noop-closed
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Query  # the no-op peer's parameters: its annotations are resolved in this module

import machine
from procs import server_children

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' throwaway Redis

from tests.redisserver import free_port, start_redis


class Pool:
    """Keep-alive HTTP/1.1 connections to one host; `request` returns (status, body)."""

    def __init__(self, port: int, size: int) -> None:
        self.port, self.size = port, size
        self.free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            self.free.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, float, float]:
        """(status, body, when the request was written (perf_counter), the server's `Server-Timing` app duration in
        ms or NaN): the write time tells the client's own delay from the server's."""
        reader, writer = await self.free.get()
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
            if body:
                head += "Content-Type: application/json\r\n"
            written = time.perf_counter()
            writer.write(head.encode() + b"\r\n" + body)
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next(int(x.split(":")[1]) for x in lines[1:] if x.lower().startswith("content-length:"))
            timing = next((x for x in lines[1:] if x.lower().startswith("server-timing:")), "")
            app_ms = float(timing.split("dur=", 1)[1].split(",", 1)[0]) if "dur=" in timing else float("nan")
            data = await reader.readexactly(length)
            self.free.put_nowait((reader, writer))
            return status, data, written, app_ms
        except Exception:
            writer.close()
            self.free.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))
            raise


TOOK = re.compile(rb'"took_ms":\s*([0-9.]+)')


class Observed:
    """What the server did in a phase, beside what the client saw: the server's own p99 of `route` (its /metrics
    histogram; the gap to the client's p99 is time outside the app: socket queues, event-loop backlog, the
    client) and the CPU cores (CPU seconds per second) each process used: the server's supervisor and each
    worker, redis, this client. On 2 shared cores their sum says how close the machine was to saturation, and the
    workers' shares how evenly the kernel spread the keep-alive connections (and so the requests) between them."""

    def __init__(self, parts: dict[str, list[int]], port: int, route: str) -> None:
        self.parts, self.port, self.route = parts, port, route
        self.tick = os.sysconf("SC_CLK_TCK")

    def _cpu(self) -> dict[str, float]:
        out = {"client": sum(os.times()[:2])}
        for name, pids in self.parts.items():
            for i, pid in enumerate(pids):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                out[f"{name}{i}" if len(pids) > 1 else name] = (int(fields[11]) + int(fields[12])) / self.tick
        return out

    def _waits(self) -> dict[str, tuple[int, int]]:
        """Per process, its main thread's time waiting for a CPU while runnable (ns) and its runs so far
        (/proc/PID/task/PID/schedstat): a request thread that waits on the run queue waits for the other processes,
        however little of the machine they use on average."""
        out = {}
        for name, pids in self.parts.items():
            for i, pid in enumerate(pids):
                try:
                    _, wait, runs = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
                except (OSError, ValueError):
                    continue
                out[f"{name}{i}" if len(pids) > 1 else name] = (int(wait), int(runs))
        return out

    def __enter__(self) -> Observed:
        self.before = _buckets(self.port, self.route)
        self.gc_before = _gc_pauses(self.port)
        self.t0, self.c0, self.w0 = time.perf_counter(), self._cpu(), self._waits()
        return self

    def __exit__(self, *_exc: object) -> None:
        wall, c1, w1 = time.perf_counter() - self.t0, self._cpu(), self._waits()
        self.cores = {k: round((c1[k] - self.c0[k]) / wall, 2) for k in c1}
        # mean wait for a CPU per run of the main thread, in microseconds
        self.run_queue_us = {k: round((w1[k][0] - self.w0[k][0]) / 1000 / max(1, w1[k][1] - self.w0[k][1]), 1)
                             for k in w1 if k in self.w0}
        self.server_p99 = _server_p99(self.before, _buckets(self.port, self.route))
        after = _gc_pauses(self.port)
        self.gc = {k: round(v - self.gc_before.get(k, 0.0), 4) for k, v in after.items()}

    def into(self, result: dict[str, Any]) -> dict[str, Any]:
        return {**result, "server_p99_ms_at_most": self.server_p99, "cpu_cores": self.cores, "gc_pauses": self.gc,
                "run_queue_wait_us": self.run_queue_us}


class _ClosedConn(asyncio.Protocol):
    """One keep-alive connection of the closed loop: the next request leaves as soon as the previous answer is
    complete (status line, headers, Content-Length body), until `deadline`."""

    def __init__(self, loop: ClosedLoop) -> None:
        self.loop, self.buf, self.sent = loop, b"", 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        if time.perf_counter() >= self.loop.deadline:
            assert self.transport is not None
            self.transport.close()
            return
        self.sent = time.perf_counter()
        self.transport.write(self.loop.next_request())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        at = self.buf.lower().find(b"content-length:", 0, end)
        length = int(self.buf[at + 15:self.buf.find(b"\r\n", at)]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        status = int(self.buf[9:12])
        self.buf = self.buf[end + 4 + length:]
        self.loop.record(time.perf_counter() - self.sent, status)
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.loop.closed(self, exc)


class ClosedLoop:
    """`connections` connections, each with one request in flight at any time: `warmup` seconds, then `seconds`
    measured, the most the server answers (with the client on the same machine). Requests are prebuilt bytes,
    drawn in a fixed random order. The connections are opened one after the other: opened at once, they all
    queue on the listening socket and the first worker to wake up accepts them all (seen: one worker with all 32
    connections and the other idle), so the throughput would depend on that race."""

    def __init__(self, port: int, requests: list[bytes], connections: int, warmup: float, seconds: float) -> None:
        self.port, self.requests, self.connections = port, requests, connections
        self.warmup, self.seconds = warmup, seconds
        self.i, self.lat, self.errors = 0, [], 0
        self.start = self.deadline = float("inf")
        self.statuses: dict[int, int] = {}
        self.open: set[_ClosedConn] = set()
        self.done: asyncio.Future[None] | None = None
        self.measuring = asyncio.Event()

    def next_request(self) -> bytes:
        self.i += 1
        return self.requests[self.i % len(self.requests)]

    def record(self, seconds: float, status: int) -> None:
        now = time.perf_counter()
        if not self.start <= now < self.deadline:
            return
        self.lat.append(seconds)
        if status != 200:
            self.errors += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def closed(self, conn: _ClosedConn, exc: Exception | None) -> None:
        self.open.discard(conn)
        if time.perf_counter() < self.deadline:  # the server dropped it: an error, and a new connection
            self.errors += 1
            asyncio.get_running_loop().create_task(self._connect())
        elif not self.open and self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def _connect(self) -> None:
        _, conn = await asyncio.get_running_loop().create_connection(lambda: _ClosedConn(self), "127.0.0.1",
                                                                     self.port)
        self.open.add(conn)

    async def run(self) -> dict[str, Any]:
        self.done = asyncio.get_running_loop().create_future()
        for _ in range(self.connections):
            await self._connect()
            await asyncio.sleep(0.002)
        await asyncio.sleep(self.warmup)
        self.start = time.perf_counter()
        self.deadline = self.start + self.seconds
        self.measuring.set()
        await asyncio.wait_for(self.done, self.seconds + 30)
        lat = np.array(self.lat) * 1000
        out = {"connections": self.connections, "seconds": self.seconds, "requests": len(lat),
               "achieved_rate": round(len(lat) / self.seconds, 1), "errors": self.errors,
               "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
               "max_ms": round(float(lat.max()), 2), "load_average": os.getloadavg()[0]}
        if self.statuses:
            out["statuses"] = self.statuses
        return out


async def closed_loop(port: int, parts: dict[str, list[int]], users: list[str], args: argparse.Namespace,
                      route: str) -> dict[str, Any]:
    """Warm up for 2 s, then the measured closed loop; the server's and the client's CPU cores beside it."""
    rng = random.Random(args.seed)
    requests = [f"GET /users/{urllib.parse.quote(u)}/recommendations?k=10 HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
                for u in (rng.choice(users) for _ in range(20_000))]
    cl = ClosedLoop(port, requests, args.closed_connections, 2.0, args.closed_seconds)
    task = asyncio.create_task(cl.run())
    await cl.measuring.wait()
    print(f"closed loop on port {port}: measuring for {args.closed_seconds:g} s", file=sys.stderr, flush=True)
    spies = _profile(parts.get("worker", []), args.profile, args.closed_seconds)
    with Observed(parts, port, route) as seen:
        out = await task
    for spy in spies:
        spy.wait(timeout=60)
    out = seen.into(out)
    # what a request cost the server's workers: on a shared machine steadier than requests/s
    workers = sum(v for k, v in out["cpu_cores"].items() if k.startswith("worker"))
    out["worker_cpu_ms_per_request"] = round(1000 * workers / out["achieved_rate"], 3)
    return out


def noop_app() -> Any:
    """The no-op peer of `aisle serve` (`--phases noop-closed`): the recommendations route with the same path and
    query parameters (validated the same way), no middleware and no state, answering a fixed list of 10 cards of
    the same shape as Aisle's, serialized per request with orjson as Aisle's read routes do."""
    import orjson
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()
    cards = [{"item_id": f"i{n}", "title": f"Item {n}", "brand": "Brand", "price": 10.0 + n, "currency": "EUR",
              "category": ["Home", "Kitchen"], "available": True, "score": 1.0 / (n + 1),
              "explanation": {"type": "personal", "text": "Popular with shoppers like you"}} for n in range(10)]

    @app.get("/users/{user_id}/recommendations")
    async def recommendations(user_id: str, k: Annotated[int, Query(ge=1, le=1000)] = 10,
                              category: Annotated[list[str] | None, Query()] = None,
                              brand: Annotated[list[str] | None, Query()] = None,
                              price_min: Annotated[float | None, Query(ge=0)] = None,
                              price_max: Annotated[float | None, Query(ge=0)] = None,
                              context_item: Annotated[str | None, Query()] = None,
                              exclude: Annotated[list[str] | None, Query()] = None) -> Response:
        body = {"items": cards[:k], "took_ms": 0.0, "model_version": "noop", "history_length": 0, "live_events": 0,
                "user_id": user_id, "known_user": True}
        return Response(orjson.dumps(body), media_type="application/json")

    return app


def _profile(pids: list[int], prefix: str | None, seconds: float) -> list[subprocess.Popen]:
    """`--profile PREFIX`: py-spy samples each worker for the measured closed loop into PREFIX.<pid>.txt, collapsed
    stacks (one line per stack and its count) to attribute a request's CPU by function."""
    if not prefix:
        return []
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [subprocess.Popen([spy, "record", "--rate", "200", "--duration", str(max(1, int(seconds))), "--pid",
                              str(pid), "--format", "raw", "--nonblocking", "--output", f"{prefix}.{pid}.txt"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


async def phase(pool: Pool, rate: float, seconds: float, make: Any, check: Any = None,
                trace: list[dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Send `make(i)` -> (method, path, body) at `rate`/s for `seconds`; latencies from scheduled times."""
    n = int(rate * seconds)
    lat = np.full(n, np.nan)
    errors: list[str] = []
    flags: list[bool] = []
    handler = np.full(n, np.nan)  # the server's own `took_ms` where the body has one: handler time vs queueing
    # where the rest of the time went: the client's delay before the write (its event loop, a free connection) and
    # the server's whole time in the app (`Server-Timing`); what is left is sockets, the worker's event loop, the CPU
    # (the delay itself split: the client's event loop late to start the request, then waiting for a free connection)
    late, loop_late, app = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    start = time.perf_counter() + 0.05
    start_unix = time.time() + 0.05  # to line the requests up with other logs (a trace's `start_unix`)

    async def one(i: int) -> None:
        sched = start + i / rate
        loop_late[i] = (time.perf_counter() - sched) * 1000
        method, path, body = make(i)
        try:
            status, data, written, app[i] = await pool.request(method, path, body)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return
        lat[i] = (time.perf_counter() - sched) * 1000
        late[i] = (written - sched) * 1000
        took = TOOK.search(data)
        if took:
            handler[i] = float(took.group(1))
        if status != 200:
            errors.append(f"{status}: {data[:200]!r}")
        elif check is not None:
            flags.append(check(data))

    # each request's task is created at its send time: creating all n tasks up front cost the client ~200 ms
    # of CPU at the phase start, which the first requests' latencies counted as the server's
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    ok = lat[np.isfinite(lat)]
    out = {"target_rate": rate, "requests": n, "achieved_rate": round(n / wall, 1), "errors": len(errors),
           "p50_ms": round(float(np.percentile(ok, 50)), 2), "p95_ms": round(float(np.percentile(ok, 95)), 2),
           "p99_ms": round(float(np.percentile(ok, 99)), 2), "max_ms": round(float(ok.max()), 2),
           "load_average": os.getloadavg()[0]}
    served = handler[np.isfinite(handler)]
    if len(served):
        out["handler_p99_ms"] = round(float(np.percentile(served, 99)), 2)
        out["handler_max_ms"] = round(float(served.max()), 2)
    timed = np.isfinite(app) & np.isfinite(lat)
    if timed.any():  # each answer split into: the client's delay, the app, and the rest (outside both)
        outside = lat[timed] - late[timed] - app[timed]
        out["split_p99_ms"] = {"client_loop": round(float(np.percentile(loop_late[timed], 99)), 2),
                               "client_delay": round(float(np.percentile(late[timed], 99)), 2),
                               "app": round(float(np.percentile(app[timed], 99)), 2),
                               "outside_app": round(float(np.percentile(outside, 99)), 2)}
    if trace is not None:
        trace.append({"start_unix": np.array(start_unix), "sched_s": np.arange(n) / rate, "latency_ms": lat,
                      "client_loop_ms": loop_late, "client_delay_ms": late, "app_ms": app, "handler_ms": handler})
    if flags:
        out["flag_share"] = round(sum(flags) / len(flags), 3)
    if errors:
        out["first_errors"] = errors[:3]
    return out


async def run(args: argparse.Namespace, port: int, parts: dict[str, list[int]]) -> dict[str, Any]:
    bundle = Path(args.bundle)
    users = json.loads((bundle / "users.json").read_text())
    items = json.loads((bundle / "items.json").read_text())
    rng = random.Random(args.seed)
    queries = _logged_queries(args.queries, args.seed) if args.queries else []
    results: dict[str, Any] = {}
    # ~50,000 objects the collector tracks (imports, the id lists): frozen, a full collection of the client's heap
    # (17-55 ms measured) no longer stalls every request in flight (the server does the same with its bundle)
    gc.collect()
    gc.freeze()
    if "closed" in args.phases:  # first: before `recs` posts events, every shopper is as the bundle knows them
        results["closed"] = await closed_loop(port, parts, users, args, "/users/{user_id}/recommendations")
    if not {"recs", "search", "search-distinct"} & set(args.phases):
        return results
    pool = Pool(port, args.connections)
    await pool.open()

    def rec(_i: int) -> tuple[str, str, bytes]:
        return "GET", f"/users/{urllib.parse.quote(rng.choice(users))}/recommendations?k=10", b""

    def event(i: int) -> tuple[str, str, bytes]:
        ev = {"user_id": rng.choice(users), "item_id": rng.choice(items), "event_type": "view",
              "event_id": f"bench-{args.seed}-{i}"}
        return "POST", "/events", json.dumps({"events": [ev]}).encode()

    await phase(pool, 50, 3, rec)  # warm-up: both workers, caches of the OS
    if "recs" in args.phases:
        ev_pool = Pool(port, 4)
        await ev_pool.open()
        with Observed(parts, port, "/users/{user_id}/recommendations") as seen:
            trace: list[dict[str, np.ndarray]] | None = [] if args.trace else None
            recs, events = await asyncio.gather(phase(pool, args.rec_rate, args.seconds, rec, trace=trace),
                                                phase(ev_pool, args.event_rate, args.seconds, event))
        results["recs"], results["events_during_recs"] = seen.into(recs), events
        if trace:
            np.savez(args.trace, **trace[0])
    if "search" in args.phases and queries:
        def search(_i: int) -> tuple[str, str, bytes]:
            return "GET", f"/search?q={urllib.parse.quote(rng.choice(queries))}&page_size=20", b""

        await phase(pool, 20, 3, search)
        with Observed(parts, port, "/search") as seen:
            found = await phase(pool, args.search_rate, args.seconds, search, check=lambda d: b'"cached":true' in d)
        results["search"] = seen.into(found)
    if "search-distinct" in args.phases and queries:
        distinct = sorted(set(queries))
        rng.shuffle(distinct)

        def fresh(i: int) -> tuple[str, str, bytes]:
            return "GET", f"/search?q={urllib.parse.quote(distinct[i % len(distinct)] + f' {i}')}&page_size=20", b""

        with Observed(parts, port, "/search") as seen:
            found = await phase(pool, args.distinct_rate, min(args.seconds, 20), fresh,
                                check=lambda d: b'"cached":true' in d)
        results["search_distinct"] = seen.into(found)
    return results


def _handler(r: dict[str, Any]) -> str:
    return f"{r['handler_p99_ms']:.1f}/{r['handler_max_ms']:.1f}" if "handler_p99_ms" in r else ""


def _gc(g: dict[str, float]) -> str:
    return "; ".join(f"gen{n}: {g.get(f'gen{n}_count', 0):.0f} pauses, {g.get(f'gen{n}_s', 0) * 1000:.0f} ms in all, "
                     f"{g.get(f'gen{n}_over_5ms', 0):.0f} over 5 ms" for n in (1, 2))


def _cpu(r: dict[str, Any]) -> str:
    return " ".join(f"{k} {v:.2f}" for k, v in r.get("cpu_cores", {}).items())


def _buckets(port: int, route: str) -> dict[float, float]:
    """The server's own latency histogram of `route` (cumulative counts by upper bound, seconds), from /metrics:
    the whole request inside the worker, Redis await included, but not the time it waited to be read."""
    out: dict[float, float] = {}
    for line in _metrics(port).splitlines():
        if line.startswith("aisle_request_seconds_bucket") and f'route="{route}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = out.get(float(le), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _gc_pauses(port: int) -> dict[str, float]:
    """The workers' collector pauses so far (`aisle_gc_pause_seconds`, summed over workers): count, seconds and
    pauses over 5 ms, per generation."""
    out: dict[str, float] = {}
    for line in _metrics(port).splitlines():
        if not line.startswith("aisle_gc_pause_seconds"):
            continue
        gen = line.split('generation="', 1)[1].split('"', 1)[0]
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("aisle_gc_pause_seconds_count"):
            out[f"gen{gen}_count"] = out.get(f"gen{gen}_count", 0.0) + value
        elif line.startswith("aisle_gc_pause_seconds_sum"):
            out[f"gen{gen}_s"] = out.get(f"gen{gen}_s", 0.0) + value
        elif 'le="0.005"' in line:
            out[f"gen{gen}_under_5ms"] = out.get(f"gen{gen}_under_5ms", 0.0) + value
    for gen in ("1", "2"):
        if f"gen{gen}_count" in out:
            out[f"gen{gen}_over_5ms"] = out[f"gen{gen}_count"] - out.pop(f"gen{gen}_under_5ms", 0.0)
    return out


def _server_p99(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound of the bucket that holds the 99th percentile of the requests between the two scrapes."""
    counts = sorted((le, after.get(le, 0.0) - before.get(le, 0.0)) for le in after)
    total = counts[-1][1] if counts else 0.0
    for le, n in counts:
        if total and n >= 0.99 * total:
            return le * 1000
    return None


def _metrics(port: int) -> str:
    """The server's Prometheus text (summed over its workers); empty while it does not answer yet."""
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def _loaded(port: int) -> int:
    """Bundle loads so far, summed over the server's workers."""
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in _metrics(port).splitlines()
               if line.startswith("aisle_reloads_total") and 'outcome="ok"' in line)


def _logged_queries(spec: str, seed: int) -> list[str]:
    import polars as pl

    from aisle.data.readers import read_dataspec

    ev = read_dataspec(spec).events
    q = ev.filter(pl.col("event_type") == "search")["query"].drop_nulls()
    return q.sample(min(len(q), 20_000), seed=seed).to_list()


def _serve_aisle(args: argparse.Namespace) -> dict[str, Any]:
    """Start redis-server (unless --state says otherwise) and `aisle serve`, run the Aisle phases, stop both."""
    procs: list[subprocess.Popen] = []
    state = args.state
    # redis-server's folder and the new store, removed after the run: each run left ~10 MB behind in /tmp, and a
    # session's runs filled the machine's disk
    work = tempfile.TemporaryDirectory(prefix="aisle-load-")
    try:
        if state == "redis":
            rport = free_port()
            procs.append(start_redis(Path(work.name) / "redis", rport, aof=False))
            state = f"redis://127.0.0.1:{rport}/0"
        port = free_port()
        aisle = str(Path(sys.executable).with_name("aisle"))
        store = [] if args.store is None else ["--store", str(Path(work.name) / "live.duckdb")
                                               if args.store == "new" else args.store]
        env = {**os.environ, "AISLE_IMPRESSIONS": "true" if args.impressions == "on" else "false",
               "AISLE_EXPLORE__ENABLED": "true" if args.explore == "on" else "false"}
        procs.append(subprocess.Popen([aisle, "serve", "--bundle", args.bundle, "--workers", str(args.workers),
                                       "--port", str(port), "--state", state, *store], stdout=subprocess.DEVNULL,
                                      env=env))
        t0 = time.time()

        while _loaded(port) < args.workers:  # a worker still loading its bundle does not accept connections yet
            if time.time() - t0 > 600 or procs[-1].poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(1)
        time.sleep(3)
        parts = {"supervisor": [procs[-1].pid], "worker": server_children(procs[-1].pid)}
        if server_children(procs[-1].pid, consumers=True):  # with a store: the stream consumers' own process
            parts["consumer"] = server_children(procs[-1].pid, consumers=True)
        if args.state == "redis":
            parts["redis"] = [procs[0].pid]
        import uvloop  # what the server's workers run on; it halves the client's own CPU per request

        return uvloop.run(run(args, port, parts))
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
        work.cleanup()


def _serve_noop(args: argparse.Namespace) -> dict[str, Any]:
    """Start the no-op peer (`noop_app`) as `aisle serve` runs uvicorn, run the closed loop on it, stop it."""
    import httpx
    import uvloop

    port = free_port()
    # the HTTP protocol `aisle serve` runs (one write per answer), where the tree measured has it
    http = "aisle.serve.http:OneWriteProtocol" if importlib.util.find_spec("aisle.serve.http") else "httptools"
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "load:noop_app", "--factory", "--app-dir",
                             str(Path(__file__).resolve().parent), "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(args.workers), "--loop", "uvloop", "--http", http,
                             "--log-level", "warning", "--no-access-log"], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/users/u/recommendations"
    try:
        t0 = time.time()
        while True:
            if time.time() - t0 > 120 or proc.poll() is not None:
                raise SystemExit("the no-op peer did not become ready")
            try:
                if (len(server_children(proc.pid)) >= args.workers
                        and httpx.get(url, timeout=5).status_code == 200):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        time.sleep(3)  # the second worker's imports
        parts = {"supervisor": [proc.pid], "worker": server_children(proc.pid)}
        users = json.loads((Path(args.bundle) / "users.json").read_text())
        gc.collect()
        gc.freeze()
        return uvloop.run(closed_loop(port, parts, users, args, "/users/{user_id}/recommendations"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--queries", help="Data source whose search log gives the queries, e.g. aisle:DIR.")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--state", default="redis", help="'redis' (start one), 'memory', or a redis:// URL.")
    ap.add_argument("--rec-rate", type=float, default=500)
    ap.add_argument("--event-rate", type=float, default=20)
    ap.add_argument("--search-rate", type=float, default=200)
    ap.add_argument("--distinct-rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--closed-connections", type=int, default=32)
    ap.add_argument("--closed-seconds", type=float, default=20)
    ap.add_argument("--profile", help="Closed loop: py-spy each worker into PROFILE.<pid>.txt (collapsed stacks).")
    ap.add_argument("--phases", default="recs,search,search-distinct",
                    help="Comma-separated: recs, search, search-distinct, closed, noop-closed.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", help="A store for the server (events and impressions reach it): a DuckDB path, a "
                    "postgresql:// URL, or 'new' (an empty DuckDB file in a temporary folder). Default: none.")
    ap.add_argument("--impressions", choices=("on", "off"), default="on",
                    help="The impression log (needs --store): on (the default setting) or off.")
    ap.add_argument("--explore", choices=("on", "off"), default="off",
                    help="Exploration of cold items ([explore], its other settings from AISLE_EXPLORE__*): off (the "
                         "default setting) or on.")
    ap.add_argument("--out", help="Write the results as JSON here.")
    ap.add_argument("--trace", help="Write each `recs` request's schedule and timings here (.npz): scheduled send "
                    "(s after `start_unix`); latency, the client's loop delay, its delay to the write (loop + a free "
                    "connection), the app's time (Server-Timing), the handler's (took_ms), in ms.")
    args = ap.parse_args()
    args.phases = args.phases.split(",")
    unknown = set(args.phases) - {"recs", "search", "search-distinct", "closed", "noop-closed"}
    if unknown:
        raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {}
    if set(args.phases) - {"noop-closed"}:
        results.update(_serve_aisle(args))
    if "noop-closed" in args.phases:  # after Aisle is stopped: the peer has the machine as Aisle had it
        results["noop_closed"] = _serve_noop(args)
    meta = {"bundle": args.bundle, "workers": args.workers, "state": args.state, "cpus": os.cpu_count(),
            "store": args.store, "impressions": args.impressions if args.store else "off (no store)",
            "explore": args.explore,
            "client": "asyncio (uvloop) HTTP/1.1, same machine", "seconds": args.seconds,
            "machine": machine.describe()}
    closed = {k: results.pop(k) for k in ("closed", "noop_closed") if k in results}
    if {"closed", "noop_closed"} <= set(closed):
        meta["closed_ratio"] = round(closed["closed"]["achieved_rate"] / closed["noop_closed"]["achieved_rate"], 3)
    report = {"meta": meta, "results": {**closed, **results}}
    if results:
        print(f"{'phase':<18}{'target/s':>9}{'got/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}"
              f"{'errors':>7}{'cached':>7}{'load':>6}{'handler p99/max':>17}{'server p99 <=':>15}  CPU cores used")
    for name, r in results.items():
        print(f"{name:<18}{r['target_rate']:>9.0f}{r['achieved_rate']:>8.1f}{r['p50_ms']:>8.1f}{r['p95_ms']:>8.1f}"
              f"{r['p99_ms']:>8.1f}{r['max_ms']:>8.1f}{r['errors']:>7}{r.get('flag_share', ''):>7}"
              f"{r['load_average']:>6.2f}{_handler(r):>17}{r.get('server_p99_ms_at_most') or '':>15}  {_cpu(r)}")
        if r.get("gc_pauses"):
            print(f"{'':<18}collector pauses in the workers: {_gc(r['gc_pauses'])}")
        if r.get("split_p99_ms"):
            print(f"{'':<18}p99 split (ms): " + ", ".join(f"{k} {v}" for k, v in r["split_p99_ms"].items())
                  + "; mean wait for a CPU per run (us): "
                  + " ".join(f"{k} {v}" for k, v in r.get("run_queue_wait_us", {}).items()))
    if closed:
        print(f"{'closed loop':<18}{'conns':>6}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'errors':>7}"
              f"{'load':>6}{'worker CPU ms/req':>18}  CPU cores used")
    for name, r in closed.items():
        print(f"{name:<18}{r['connections']:>6}{r['achieved_rate']:>9.1f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
              f"{r['max_ms']:>8.1f}{r['errors']:>7}{r['load_average']:>6.2f}{r['worker_cpu_ms_per_request']:>18.3f}"
              f"  {_cpu(r)}")
    if "closed_ratio" in meta:
        print(f"Aisle / no-op closed-loop throughput: {meta['closed_ratio']:.1%}")
    print(f"store: {meta['store']}, impressions: {meta['impressions']}, explore: {meta['explore']}; "
          f"machine: {meta['machine']}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
