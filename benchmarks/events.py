"""Event throughput from HTTP through the durable stream into the store, and the consumers' lag under that load.

    .venv/bin/python benchmarks/events.py --store duckdb --seconds 300
    .venv/bin/python benchmarks/events.py --store postgresql --seconds 300   # a throwaway server (tests/pgserver.py)
    .venv/bin/python benchmarks/events.py --store duckdb --seconds 300 --rate 20000   # paced: open loop

Starts redis-server (AOF on, `--appendfsync`, everysec by default) and `aisle serve --workers 2 --state redis://
--store ... --consumers N` on a small synthetic bundle (the server's consumer processes write the stream to the
store), then posts batches of `--batch` distinct events to POST /events over `--connections` keep-alive connections
for `--seconds`: flat out (each connection posts its next batch as soon as the previous answer arrives), or with
`--rate` paced, open loop (a batch is due every batch/rate seconds whatever the answers; its latency counts from
when it was due, so a server that falls behind shows it). Reports acknowledged events/s, the p50/p99 of POST
/events, the stream lag (entries acknowledged to clients, not yet in the store) read from /metrics every second
with its trend (`lag_trend`: least-squares slope with a 95% interval, first- and second-half means, a verdict), and,
after the clients stop, how long the consumers take to drain the lag and whether the store holds exactly the
acknowledged events. The client shares the machine's 2 cores with the server, Redis and the store; its CPU is
reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import machine
from load import Pool, free_port
from procs import cpu_seconds, postgres_pid, redis_figures, redis_pid, redis_report, server_children, tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' throwaway PostgreSQL server and readiness wait

from tests.redisserver import redis_server  # noqa: E402
from tests.serving import wait_ready  # noqa: E402

from aisle.serve.stream import stream_key  # noqa: E402

TRACE_ENV = "AISLE_STREAM_TRACE"  # aisle.serve.stream.TRACE_ENV, spelled out so the script runs against older trees

LAG = re.compile(rb"^aisle_stream_lag_entries (\d+)", re.M)
FINE_S = 0.05  # the fine lag samples' interval (Redis XLEN), 10-20 per period of the consumer's sawtooth


@contextmanager
def store_url(kind: str, folder: Path, pg_settings: dict[str, str] | None = None) -> Any:
    """A new store of `kind`: a DuckDB file in `folder`, or a throwaway PostgreSQL server with `pg_settings`."""
    if kind == "duckdb":
        yield str(folder / "events.duckdb")
        return
    from tests.pgserver import postgres_server  # the tests' throwaway server (fsync off: an upper bound)

    with postgres_server(pg_settings) as url:
        yield url


def prefill(url: str, n: int) -> float:
    """`n` stored events before the run (ids `pre-N`, one a millisecond, ending a day before the posted ones): a
    store that already holds a history, as a running shop's does. Returns the seconds it took."""
    import polars as pl

    from aisle.data.readers.base import Dataset
    from aisle.store import open_store
    from aisle.types import EVENT_SCHEMA

    t0 = time.perf_counter()
    k = pl.int_range(0, n, eager=True)
    start = datetime.now(UTC) - timedelta(days=1, milliseconds=n)
    frame = pl.DataFrame({"event_id": "pre-" + k.cast(pl.String), "user_id": "u" + (k % 5000).cast(pl.String),
                          "item_id": "i" + (k % 2000).cast(pl.String).str.zfill(5)})
    frame = frame.with_columns(pl.lit("view").alias("event_type"),
                               (pl.lit(start) + pl.duration(milliseconds=k)).cast(EVENT_SCHEMA["timestamp"])
                               .alias("timestamp"))
    with open_store(url) as store:
        store.ingest(Dataset(name="prefill", events=frame))
    return time.perf_counter() - t0


def build_bundle(folder: Path) -> Path:
    from aisle.bundle import build_serving_bundle, fingerprint
    from aisle.data.readers.base import Dataset
    from aisle.data.synthetic import SyntheticConfig, generate
    from aisle.pipeline import PipelineConfig, SourceSpec

    shop = generate(SyntheticConfig(n_items=2_000, n_users=1_000, n_events=50_000, seed=0))
    data = Dataset(name="events-bench", items=shop.items, users=shop.users, events=shop.events)
    sources = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))
    bundle = build_serving_bundle(data, PipelineConfig(sources=sources, rounds=20), search=False)
    bundle.save(folder / "bundle", data_fingerprint=fingerprint(data.events), metrics=bundle.manifest["metrics"])
    return folder / "bundle"


def batches(n_items: int, size: int, per_user: int = 1) -> Any:
    """Endless distinct batches: event ids are unique, so every acknowledged event must be stored once. `per_user`
    events in a row come from one shopper (1: a batch of 100 holds 100 shoppers, as a collector forwarding many
    users' events sends; more: a session's clicks sent together)."""
    start = datetime.now(UTC) - timedelta(hours=1)
    serial = 0
    while True:
        events = []
        for _ in range(size):
            serial += 1
            events.append({"event_id": f"bench-{serial}", "user_id": f"u{(serial // per_user) % 5000}",
                           "item_id": f"i{random.randrange(n_items):05d}", "event_type": "view",
                           "timestamp": (start + timedelta(milliseconds=serial)).isoformat()})
        yield json.dumps({"events": events}).encode()


def per_second(samples: list[tuple[float, int]], how: Any) -> list[tuple[float, float]]:
    """`how` (np.mean: the lag averaged over every phase of the sawtooth; np.min: its trough, what was left when
    the consumer had just acknowledged a round) of the fine lag samples of each whole second."""
    seconds: dict[int, list[int]] = {}
    for t, v in samples:
        seconds.setdefault(int(t), []).append(v)
    return [(k + 0.5, float(how(v))) for k, v in sorted(seconds.items()) if len(v) >= 5]


def lag_and_rewrites(fine: list[tuple[float, int]], aof: list[tuple[float, int, int]]) -> dict[str, Any]:
    """The mean fine lag in the seconds an AOF rewrite ran and in the others, per third of the run: do the
    rewrites (a fork writing the whole data set, and the disk it keeps busy) slow the consumer, and more so later
    when the data set is larger? With Redis' count of fsyncs it delayed (`aof_delayed_fsync`: with
    `appendfsync everysec` a write waits when the previous fsync has taken over 2 s)."""
    if not aof or not fine:
        return {}
    during = {int(t) for t, busy, _ in aof if busy}
    end = max(t for t, _ in fine)
    out: dict[str, Any] = {"rewrite_seconds": len(during), "delayed_fsyncs": aof[-1][2] - aof[0][2]}
    for third in range(3):
        lo, hi = end * third / 3, end * (third + 1) / 3
        part = [(int(t) in during, v) for t, v in fine if lo <= t < hi]
        for name, flag in (("rewriting", True), ("not_rewriting", False)):
            got = [v for busy, v in part if busy == flag]
            out[f"third{third + 1}_{name}"] = round(float(np.mean(got)), 1) if got else None
    return out


def lag_trend(samples: list[tuple[float, float]] | list[tuple[float, int]], events_per_s: float, events_per_entry: int,
              small_s_per_min: float = 0.1, warmup_s: float = 10.0) -> dict[str, Any]:
    """Does the lag grow? `samples`: (seconds, lag entries), one a second; those of the first `warmup_s` (the lag
    filling up from an empty stream) are left out. The least-squares slope of lag on time (entries per minute) with
    a 95% interval, the mean lag of the first and second half, and a verdict.

    Successive samples are not independent (a lag high at one second is high at the next), so the interval uses the
    effective number of samples n (1 - r) / (1 + r), r the lag-1 autocorrelation of the residuals: with the plain
    n it would be several times too narrow and call noise "growth". The verdict: "flat" when the interval holds 0;
    "flat (slope small)" when the slope is above 0 but the lag gains less than `small_s_per_min` seconds of the
    posted traffic per minute (at that pace it would take 10 minutes to add one second of events); "GROWS"
    otherwise; "too few samples" under 10."""
    from scipy import stats

    points = np.array([(t, v) for t, v in samples if v >= 0 and t >= warmup_s], dtype=float)
    out: dict[str, Any] = {"samples": len(points)}
    if len(points) < 10:
        return {**out, "verdict": "too few samples"}
    t, y = points[:, 0] / 60.0, points[:, 1]
    fit = stats.linregress(t, y)
    resid = y - (fit.intercept + fit.slope * t)
    r = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if resid.std() > 0 else 0.0
    n_eff = max(3.0, len(y) * (1 - max(r, 0.0)) / (1 + max(r, 0.0)))
    se = fit.stderr * np.sqrt((len(y) - 2) / max(n_eff - 2, 1.0))
    half = stats.t.ppf(0.975, max(n_eff - 2, 1.0)) * se
    low, high = fit.slope - half, fit.slope + half
    small = small_s_per_min * events_per_s / events_per_entry  # entries per minute
    middle = len(y) // 2
    if low <= 0 <= high:
        verdict = "flat: the slope's 95% interval holds 0"
    elif high < 0:
        verdict = "flat: falling"
    elif fit.slope < small:
        verdict = (f"flat (slope small): +{fit.slope:.1f} entries/min, under {small_s_per_min} s of traffic "
                   f"({small:.0f} entries) a minute")
    else:
        verdict = (f"GROWS: +{fit.slope:.1f} entries/min ({fit.slope * events_per_entry / events_per_s:.2f} s of "
                   "traffic a minute)")
    return {**out, "slope_entries_per_min": round(float(fit.slope), 2),
            "slope_95": [round(float(low), 2), round(float(high), 2)], "residual_autocorrelation": round(r, 3),
            "effective_samples": round(n_eff, 1), "mean_first_half": round(float(y[:middle].mean()), 1),
            "mean_second_half": round(float(y[middle:].mean()), 1), "max": int(y.max()),
            "small_slope_entries_per_min": round(small, 1), "verdict": verdict}


async def post_loop(port: int, seconds: float, connections: int, size: int, n_items: int, base: str,
                    rate: float = 0.0, per_user: int = 1, state: str | None = None) -> dict[str, Any]:
    """Post for `seconds`: flat out (`rate` 0) or paced to `rate` events/s, open loop (latency counted from when a
    batch was due, so waiting for a free connection counts). The lag is read from /metrics once a second (what an
    operator's scraper sees) and, with `state`, from Redis every `FINE_S` (`lag_fine`: the consumer's sawtooth,
    whose period of 0.5-1 s a once-a-second sample aliases into slow waves)."""
    pool = Pool(port, connections)
    await pool.open()
    source = batches(n_items, size, per_user)
    latencies: list[float] = []
    acked = errors = 0
    lag: list[tuple[float, int]] = []
    fine: list[tuple[float, int]] = []
    rewrites: list[tuple[float, int, int]] = []
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()

    async def post(due: float) -> None:
        nonlocal acked, errors
        status, *_ = await pool.request("POST", "/events", next(source))
        latencies.append(time.perf_counter() - due)
        if status == 200:
            acked += size
        else:
            errors += 1

    async def client() -> None:
        while time.perf_counter() < deadline:
            await post(time.perf_counter())

    async def paced() -> None:
        interval, k, running = size / rate, 0, set()
        while (due := t0 + k * interval) < deadline:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(post(due))
            running.add(task)
            task.add_done_callback(running.discard)
            k += 1
        await asyncio.gather(*running)

    async def sample_often() -> None:
        import redis.asyncio as aredis

        r = aredis.Redis.from_url(state)
        try:
            k = 0
            while time.perf_counter() < deadline:
                await asyncio.sleep(FINE_S)
                fine.append((time.perf_counter() - t0, int(await r.xlen(stream_key()))))
                k += 1
                if k % int(1 / FINE_S) == 0:  # once a second: is an AOF rewrite running, fsyncs delayed so far
                    info = await r.info("persistence")
                    rewrites.append((time.perf_counter() - t0, int(info["aof_rewrite_in_progress"]),
                                     int(info.get("aof_delayed_fsync", 0))))
        finally:
            await r.aclose()

    async def sample() -> None:
        async with httpx.AsyncClient() as http:
            while time.perf_counter() < deadline:
                await asyncio.sleep(1)
                found = LAG.search((await http.get(f"{base}/metrics")).content)
                lag.append((time.perf_counter() - t0, int(found.group(1)) if found else -1))

    cpu0 = sum(os.times()[:2])
    senders = [paced()] if rate > 0 else [client() for _ in range(connections)]
    await asyncio.gather(*senders, sample(), *([sample_often()] if state else []))
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"acked_events": acked, "events_per_s": round(acked / wall, 1), "requests": len(latencies),
            "errors": errors, "post_p50_ms": round(float(np.median(ms)), 2),
            "post_p99_ms": round(float(np.quantile(ms, 0.99)), 2), "lag_samples": lag, "lag_fine": fine,
            "aof_samples": rewrites,
            "client_cores": round((sum(os.times()[:2]) - cpu0) / wall, 2)}


def drain(base: str, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        found = LAG.search(httpx.get(f"{base}/metrics").content)
        if found and int(found.group(1)) == 0:
            return time.perf_counter() - t0
        time.sleep(0.5)
    return float("inf")


def stored(url: str) -> tuple[int, int]:
    """(events in the store, distinct event ids among them)."""
    from aisle.store import open_store

    with open_store(url, read_only=True) as store:
        ids = store.events()["event_id"]
    return len(ids), ids.n_unique()


def round_table(trace: Path, t0: float, window_s: float = 30.0) -> list[dict[str, Any]]:
    """The consumers' rounds of the events stream (`aisle.serve.stream.TRACE_ENV`), per `window_s` of the run
    (`t0`: the run's start, epoch seconds): rounds, mean entries a round, and the mean seconds of each part of a
    round (reading the stream, decoding, opening the store, appending, closing it = the commit and DuckDB's
    checkpoint, the erasure check after it, acknowledging, the pause), so a growing part shows as a growing column."""
    parts = ("read", "prepare", "open", "append", "close", "erasures", "ack", "pause")
    rows: dict[int, list[dict[str, Any]]] = {}
    for line in trace.read_bytes().splitlines():
        got = json.loads(line)
        if got.get("stream") == "e":
            rows.setdefault(int((got["start"] - t0) // window_s), []).append(got)
    out = []
    for k in sorted(rows):
        rounds = rows[k]
        events = sum(r["events"] for r in rounds)
        out.append({"from_s": int(k * window_s), "rounds": len(rounds),
                    "entries": round(float(np.mean([r["entries"] for r in rounds])), 1),
                    **{p: round(1000 * float(np.mean([r.get(p, 0.0) for r in rounds])), 1) for p in parts},
                    "cpu_us_per_event": {p: round(1e6 * sum(r.get(f"{p}_cpu", 0.0) for r in rounds) / max(events, 1), 2)
                                         for p in parts if p != "pause"}})
    return out


def redis_info(url: str) -> dict[str, Any]:
    """What Redis holds and what its append-only file cost after the run: memory, keys, the AOF's size and how
    often it was rewritten (a rewrite forks Redis; the child's CPU is not in redis-server's figure)."""
    import redis

    r = redis.Redis.from_url(url)
    try:
        info = {**r.info("memory"), **r.info("persistence"), **r.info("keyspace")}
        return {"used_memory_mb": round(info["used_memory"] / 2**20, 1), "keys": info.get("db0", {}).get("keys", 0),
                "aof_mb": round(info.get("aof_current_size", 0) / 2**20, 1),
                "aof_rewrites": info.get("aof_rewrites", 0)}
    finally:
        r.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", choices=("duckdb", "postgresql"), default="duckdb")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--appendfsync", choices=("everysec", "always"), default="everysec")
    ap.add_argument("--rate", type=float, default=0.0, help="events/s, paced open loop (0: flat out)")
    ap.add_argument("--consumers", type=int, default=1, help="the server's consumer processes ([serve] consumers)")
    ap.add_argument("--per-user", type=int, default=1, help="events in a row from one shopper (batches())")
    ap.add_argument("--prefill", type=int, default=0, help="events stored before the run (a store with a history)")
    ap.add_argument("--trace", action="store_true",
                    help="log every consumer round (AISLE_STREAM_TRACE) and tabulate them per 30 s")
    ap.add_argument("--out")
    args = ap.parse_args()
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aisle-events-")))
        bundle = build_bundle(folder)
        state = stack.enter_context(redis_server(folder, fsync=args.appendfsync))
        url = stack.enter_context(store_url(args.store, folder))
        prefill_s = prefill(url, args.prefill) if args.prefill else 0.0
        port = free_port()
        trace = folder / "rounds.jsonl"
        env = {**os.environ, **({TRACE_ENV: str(trace)} if args.trace else {})}
        server = subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(bundle), "--port",
                                   str(port), "--workers", str(args.workers), "--state", state, "--store", url,
                                   *(["--consumers", str(args.consumers)] if args.consumers != 1 else [])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                  env=env)
        stack.callback(lambda: (server.terminate(), server.wait(30)))
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server)
        time.sleep(3)  # every worker up (ready answers with the first)
        parts = {"supervisor": [server.pid], "workers": server_children(server.pid),
                 "consumer": server_children(server.pid, consumers=True), "redis": redis_pid(state)}
        # Redis with its AOF-rewrite children (forked as the file grows; each writes the whole data set)
        cpu0 = {k: cpu_seconds(v, children=k == "redis") for k, v in parts.items()}
        redis0 = redis_figures(state)
        cpu0_own = cpu_seconds(parts["redis"])
        postmaster = postgres_pid(url) if args.store == "postgresql" else None
        store0 = tree_cpu_seconds(postmaster)
        started = time.time()
        result = asyncio.run(post_loop(port, args.seconds, args.connections, args.batch, 2_000, base, args.rate,
                                            args.per_user, state))
        result["drain_seconds"] = round(drain(base), 1)
        cpu = {k: cpu_seconds(v, children=k == "redis") - cpu0[k] for k, v in parts.items()}
        store_cpu = tree_cpu_seconds(postmaster) - store0
        result["redis_rewrite_cpu_us_per_event"] = round(
            (cpu["redis"] - (cpu_seconds(parts["redis"]) - cpu0_own)) / max(result["acked_events"], 1) * 1e6, 1)
        redis1 = redis_figures(state)
        result["redis_info"] = redis_info(state)
        acked = max(result["acked_events"], 1)
        # until the lag was drained (with the old code the workers' CPU includes their consumer threads)
        spent = {"workers": cpu["workers"] + cpu["supervisor"], "consumer": cpu["consumer"], "redis": cpu["redis"]}
        if postmaster is not None:  # the PostgreSQL server's processes (DuckDB runs inside the consumer)
            spent["postgresql"] = store_cpu
        result["cpu_us_per_event"] = {k: round(v / acked * 1e6, 1) for k, v in spent.items()}
        result["cpu_us_per_event"]["all"] = round(sum(spent.values()) / acked * 1e6, 1)
        result["events_per_cpu_second"] = round(acked / max(sum(spent.values()), 1e-9))
        result["processes"] = {k: len(v) for k, v in parts.items()}
        result["load_average"] = os.getloadavg()
        server.terminate()
        server.wait(60)
        result["stored"], result["stored_distinct"] = stored(url)
        result["stored"] -= args.prefill
        result["stored_distinct"] -= args.prefill
        if args.trace:
            result["rounds"] = round_table(trace, started)
        rate = args.rate or result["events_per_s"]
        result["lag_trend"] = lag_trend(result["lag_samples"], rate, args.batch)
        result["lag_trend_fine"] = lag_trend(per_second(result["lag_fine"], np.mean), rate, args.batch)
        result["lag_trend_troughs"] = lag_trend(per_second(result["lag_fine"], np.min), rate, args.batch)
        result["lag_and_rewrites"] = lag_and_rewrites(result["lag_fine"], result["aof_samples"])
        result.update(store=args.store, appendfsync=args.appendfsync, batch=args.batch, rate=args.rate or None,
                      consumers=args.consumers, per_user=args.per_user, prefill=args.prefill,
                      prefill_s=round(prefill_s, 1),
                      connections=args.connections, seconds=args.seconds,
                      machine=machine.describe())
    series = ("lag_samples", "lag_fine", "aof_samples", "rounds")
    print(json.dumps({k: v for k, v in result.items() if k not in series}, indent=2))
    if "rounds" in result:
        head = [k for k in result["rounds"][0] if k != "cpu_us_per_event"] if result["rounds"] else []
        cpu = list(result["rounds"][0]["cpu_us_per_event"]) if result["rounds"] else []
        print("consumer rounds per 30 s: wall ms per round | CPU us per event\n  "
              + " ".join(f"{h[:8]:>8}" for h in head) + " |" + " ".join(f"{h[:8]:>8}" for h in cpu))
        for row in result["rounds"]:
            print("  " + " ".join(f"{row[h]:>8}" for h in head) + " |"
                  + " ".join(f"{row['cpu_us_per_event'][h]:>8}" for h in cpu))
    print("lag (s, entries):", " ".join(f"{t:.0f}:{v}" for t, v in result["lag_samples"]))
    print(redis_report(redis0, redis1, max(result["acked_events"], 1)))
    print("lag verdict (once a second from /metrics):", result["lag_trend"]["verdict"])
    print("lag verdict (every 50 ms, mean per second):", result["lag_trend_fine"]["verdict"])
    print("lag verdict (every 50 ms, trough per second):", result["lag_trend_troughs"]["verdict"])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
