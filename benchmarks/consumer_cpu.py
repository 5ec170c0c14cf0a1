"""The stream consumers' CPU at the load benchmark's traffic, in CPU time (so the figure holds on a busy machine,
where `load.py`'s consumer cores move with the neighbours): what the consumer process of `aisle serve` costs the
2 cores its workers answer on.

    .venv/bin/python benchmarks/consumer_cpu.py --seconds 30                  # events and impressions
    .venv/bin/python benchmarks/consumer_cpu.py --seconds 30 --streams events # one stream alone

A feeder process writes what `load.py --phases recs --rec-rate 1000 --impressions on` makes the workers write:
`--lists` served lists a second of `--k` items into `aisle:impressions` (two workers' flushes a second, encoded as
a worker encodes them) and `--events` single-event entries a second into the event stream (each `POST /events`
of the benchmark is one entry). This process runs the consumers as the consumer process does
(`aisle.serve.consumers.start`, a DuckDB store written with one thread, the settings' paces), and reports its own
CPU per second (its threads, DuckDB's included) over `--seconds` after a 5-s warm-up (and per served list or per
event when one stream runs alone). `--events-store-s` and `--impressions-store-s` override the settings' paces.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' throwaway Redis

WARMUP_S = 5.0


def feed(url: str, seconds: float, lists: int, k: int, events: int, streams: list[str]) -> None:
    """Write the workers' share of the load benchmark's traffic into Redis for `seconds` (the feeder process)."""
    import redis

    from aisle.serve.impressions import IMPRESSIONS_STREAM, new_request_id
    from aisle.serve.impressions import encode as encode_lists
    from aisle.serve.stream import encode as encode_event
    from aisle.serve.stream import stream_key

    r = redis.Redis.from_url(url)
    items = [f"i{n:06d}" for n in range(k)]
    scores = [1.0 / (n + 1) for n in range(k)]
    every = max(1, lists // max(events, 1))
    buffered: list[list[tuple]] = [[], []]  # two workers
    t0 = last = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        wait = t0 + n / lists - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        user = f"u{n % 5000}"
        buffered[n % 2].append((new_request_id(), time.time_ns() // 1000, user, None, "recommendations", "v1", None,
                                None, 0, items, scores, [1.0] * k))
        if "events" in streams and events and n % every == 0:
            event = {"user_id": user, "item_id": items[n % k], "event_type": "view", "timestamp": datetime.now(UTC)}
            r.xadd(stream_key(), {"e": b"[" + encode_event(event) + b"]"})
        if time.monotonic() - last >= 1.0:  # each worker flushes once a second (`impressions_flush_s`)
            last = time.monotonic()
            if "impressions" in streams:
                for served in buffered:
                    r.xadd(f"aisle:{IMPRESSIONS_STREAM}", {"i": encode_lists(served)})
            buffered = [[], []]
        n += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--lists", type=int, default=1000, help="Served lists a second (the recommendation rate).")
    ap.add_argument("--k", type=int, default=10, help="Items per list.")
    ap.add_argument("--events", type=int, default=20, help="Event entries a second.")
    ap.add_argument("--streams", default="events,impressions")
    ap.add_argument("--events-store-s", type=float, help="The events consumer's pace (default: the setting's).")
    ap.add_argument("--impressions-store-s", type=float, help="The impressions consumer's pace (default: the "
                    "setting's).")
    ap.add_argument("--feed", nargs=2, metavar=("URL", "SECONDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    streams = args.streams.split(",")
    if args.feed:
        feed(args.feed[0], float(args.feed[1]), args.lists, args.k, args.events, streams)
        return

    from tests.redisserver import redis_server

    from aisle.config import Settings
    from aisle.serve import consumers
    from aisle.serve.sink import StoreSink

    paces = {name: value for name, value in (("events_store_s", args.events_store_s),
                                             ("impressions_store_s", args.impressions_store_s)) if value is not None}
    with redis_server(aof=False) as url, tempfile.TemporaryDirectory(prefix="aisle-consumer-cpu-") as tmp:
        settings = Settings(state=url, store=str(Path(tmp) / "live.duckdb"), impressions=True, **paces)
        sink = StoreSink(settings.store, threads=1)  # as the consumer process opens it
        stop = threading.Event()
        running = consumers.start(settings, sink.locked, stop, streams=tuple(streams))
        feeder = subprocess.Popen([sys.executable, __file__, "--feed", url, str(args.seconds + WARMUP_S + 1),
                                   "--lists", str(args.lists), "--k", str(args.k), "--events", str(args.events),
                                   "--streams", args.streams])
        try:
            time.sleep(WARMUP_S)
            print(f"measuring for {args.seconds:.0f} s", flush=True)
            cpu0, t0 = time.process_time(), time.monotonic()
            time.sleep(args.seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
            feeder.wait(timeout=60)
        finally:
            if feeder.poll() is None:
                feeder.kill()
            consumers.stop_all(running, stop)
            sink.close()
    cores = cpu / wall
    consumed = {c.key: c.consumed for c, _ in running}
    print(f"consumer CPU: {cores:.3f} cores ({cpu * 1e3 / wall:.1f} ms a second)")
    if streams == ["impressions"]:
        print(f"per served list: {cpu / wall / args.lists * 1e6:.1f} us ({cpu / wall / args.lists / args.k * 1e6:.2f} "
              "us per impression)")
    elif streams == ["events"]:
        print(f"per event: {cpu / wall / args.events * 1e6:.0f} us")
    print(f"paces: events {settings.events_store_s} s, impressions {settings.impressions_store_s} s; consumed: "
          + ", ".join(f"{k} {v:,}" for k, v in consumed.items()))
    print(f"traffic: {args.lists:,} lists/s of {args.k}, {args.events} events/s; machine: {machine.describe()}")


if __name__ == "__main__":
    main()
