"""Redis memory per duplicate-detection mark, and what an AOF rewrite of them costs: figures that do not move with
what else runs on the machine (bytes), or move little (the rewrite's own CPU time).

    .venv/bin/python benchmarks/events_marks.py --events 1000000 --per-shopper 20     # a store's shoppers
    .venv/bin/python benchmarks/events_marks.py --events 1000000 --per-shopper 1200   # events.py's 5,000 shoppers
    PYTHONPATH=/tmp/base/src .venv/bin/python benchmarks/events_marks.py ...          # the same against another tree

Starts redis-server (AOF on, `appendfsync everysec`, as `events.py` runs it), publishes `--events` distinct events
in batches of `--batch` through the worker's own path (`EventStream.publish`), `--per-shopper` events per shopper
(shoppers interleaved, as a collector forwarding many users' events sends them). Then drops what is not a mark
(the stream, which consumers empty, and the live histories, bounded per shopper) and reports the memory Redis
holds per mark (used_memory over the empty server's), its keys, then runs one BGREWRITEAOF and reports the rewritten
file's size per mark and the rewrite's wall time (the fork's child writes every key: the cost each automatic
rewrite pays, and `events.py --rate 20000` saw 15 of them in 300 s).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redisserver import redis_server  # noqa: E402


def batches(events: int, per_shopper: int, size: int) -> Any:
    """Distinct events, `per_shopper` for each shopper, shoppers interleaved (event k is shopper k mod shoppers)."""
    shoppers = max(1, events // per_shopper)
    start = datetime.now(UTC) - timedelta(hours=1)
    for first in range(0, events, size):
        yield [{"event_id": f"mark-{k}", "user_id": f"u{k % shoppers}", "item_id": f"i{k % 2000:05d}",
                "event_type": "view", "timestamp": start + timedelta(microseconds=k)}
               for k in range(first, min(first + size, events))]


async def publish(url: str, events: int, per_shopper: int, size: int) -> float:
    from aisle.serve import state as state_module
    from aisle.serve.state import RedisState
    from aisle.serve.stream import EventStream

    state_module._TIMEOUT_S = 60.0  # a busy machine may hold the publisher or Redis off the CPU for seconds
    state = RedisState(url)
    stream = EventStream(state)
    t0 = time.perf_counter()
    n = 0
    for batch in batches(events, per_shopper, size):
        dup = await stream.publish([e["event_id"] for e in batch], batch)
        assert not any(dup)
        n += len(batch)
        if n % 100_000 < size:
            print(f"  {n:,} events published", file=sys.stderr, flush=True)
    took = time.perf_counter() - t0
    await state.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--per-shopper", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    import redis

    with tempfile.TemporaryDirectory(prefix="aisle-events-marks-") as tmp, redis_server(Path(tmp)) as url:
        r = redis.Redis.from_url(url)
        empty = r.info("memory")["used_memory"]
        took = asyncio.run(publish(url, args.events, args.per_shopper, args.batch))
        r.delete("aisle:stream:events")
        for keys in _chunks(r.scan_iter("aisle:h:*", count=10_000), 10_000):
            r.delete(*keys)
        used = r.info("memory")["used_memory"] - empty
        keys = r.dbsize()
        encodings: dict[str, int] = {}
        for key in r.scan_iter(count=10_000):
            kind = r.object("encoding", key).decode()
            encodings[kind] = encodings.get(kind, 0) + 1
        while r.info("persistence")["aof_rewrite_in_progress"]:  # an automatic one while publishing
            time.sleep(0.1)
        t0 = time.perf_counter()
        r.bgrewriteaof()
        time.sleep(0.05)
        while r.info("persistence")["aof_rewrite_in_progress"] or r.info("persistence")["aof_rewrite_scheduled"]:
            time.sleep(0.05)
        rewrite_s = time.perf_counter() - t0
        info = r.info("persistence")
        aof = sum(p.stat().st_size for p in Path(tmp).rglob("appendonly*") if p.is_file())
        r.close()
    n = args.events
    print(f"{n:,} events, {args.per_shopper} per shopper ({max(1, n // args.per_shopper):,} shoppers), batches of "
          f"{args.batch}: published in {took:.1f} s; machine: {machine.describe()}")
    print(f"  Redis memory for the marks: {used / n:,.1f} bytes per event ({used / 2**20:,.1f} MiB), {keys:,} keys "
          f"({', '.join(f'{v:,} {k}' for k, v in sorted(encodings.items()))})")
    print(f"  one AOF rewrite of them: {rewrite_s:.2f} s wall ({info['aof_last_rewrite_time_sec']} s by Redis' "
          f"count), files after it {aof / n:,.1f} bytes per event ({aof / 2**20:,.1f} MiB), copy-on-write "
          f"{info.get('aof_last_cow_size', 0) / 2**20:,.1f} MiB")


def _chunks(it: Any, size: int) -> Any:
    chunk: list[Any] = []
    for x in it:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


if __name__ == "__main__":
    main()
