"""CPU per acknowledged event on the API side of POST /events, in one process: load-independent where the HTTP
benchmark (`events.py`) is not.

    .venv/bin/python benchmarks/events_cpu.py --requests 400
    .venv/bin/python benchmarks/events_cpu.py --requests 300 --profile     # + the functions that cost most

The app (`create_app`, Redis state with AOF everysec, a DuckDB store, no consumers) answers batches of `--batch`
distinct events through an in-process ASGI client; the thread CPU time of the loop (the route: parsing,
validation, duplicate keys, the stream append and the live state, plus the in-process client's own share) is
divided by the events acknowledged. Redis' CPU per event is reported beside it (its `INFO cpu` over the timed
requests) with `INFO commandstats`: the commands a batch's script runs, per event, and Redis' microseconds in each,
so a change to the script shows where Redis' time went. Compare two trees with `PYTHONPATH=<tree>/src`, back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import httpx

import machine
from events import batches, build_bundle
from procs import redis_figures, redis_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redisserver import redis_server  # noqa: E402


async def measure(state: str, folder: Path, bundle: Path, args: argparse.Namespace) -> pstats.Stats | None:
    from aisle.config import Settings
    from aisle.serve import create_app

    app = create_app(Settings(bundle=bundle, state=state, store=str(folder / "events.duckdb"), consume=False,
                              impressions=False))
    headers = {"content-type": "application/json"}
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                   base_url="http://aisle") as client:
        source = batches(2_000, args.batch, args.per_user)
        for _ in range(20):  # warm-up: scripts loaded, connections open
            await client.post("/events", content=next(source), headers=headers)
        bodies = [next(source) for _ in range(args.requests)]
        profile = cProfile.Profile() if args.profile else None
        redis0 = redis_figures(state)
        t0 = time.thread_time()
        if profile is not None:
            profile.enable()
        for body in bodies:
            resp = await client.post("/events", content=body, headers=headers)
            if resp.status_code != 200:
                raise SystemExit(f"POST /events answered {resp.status_code}: {resp.text[:300]}")
        if profile is not None:
            profile.disable()
        cpu = time.thread_time() - t0
        redis1 = redis_figures(state)
    events = args.requests * args.batch
    print(f"{events} events in {args.requests} requests: {cpu / args.requests * 1000:.3f} ms CPU per request, "
          f"{cpu / events * 1e6:.1f} us per event, {events / cpu:,.0f} events per CPU-second"
          f"{' (under the profiler)' if profile else ''}; machine: {machine.describe()}")
    print(redis_report(redis0, redis1, events))
    return pstats.Stats(profile) if profile is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--per-user", type=int, default=1, help="events in a row from one shopper (events.batches)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aisle-events-cpu-") as tmp:
        folder = Path(tmp)
        bundle = build_bundle(folder)
        with redis_server(folder, fsync="everysec") as state:
            stats = asyncio.run(measure(state, folder, bundle, args))
    if stats is not None:
        stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
