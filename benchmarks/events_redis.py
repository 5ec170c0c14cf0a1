"""Redis' work per accepted event on `POST /events`, counted in instructions: a figure that does not move with what
else runs on the machine (CPU time on the shared 2 cores moved +-30% between back-to-back runs).

    .venv/bin/python benchmarks/events_redis.py --batches 200
    .venv/bin/python benchmarks/events_redis.py --batches 200 --per-user 5      # a session's events sent together
    PYTHONPATH=/tmp/base/src .venv/bin/python benchmarks/events_redis.py ...    # the same against another tree

Starts redis-server under valgrind's callgrind (AOF on, `appendfsync everysec`, as `events.py` runs it), publishes
batches of distinct events through the worker's own path (`EventStream.publish`: the Lua script that checks and
marks the duplicate-detection keys, XADDs the entry and appends the live histories), and reads the instructions
Redis executed for the measured batches (all its threads: the event loop and the AOF's background fsync) and the
commands per event from INFO commandstats. The consumers' reads are not in it (`events.py` has those, in CPU time).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

import machine
from events import batches
from procs import redis_figures

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redisserver import free_port  # noqa: E402

TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.M)


def instructions(pid: int, out: Path) -> int:
    """Instructions callgrind counted in redis-server since the last zeroing (a dump, read back)."""
    for old in out.parent.glob(out.name + "*"):
        old.unlink()
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dumps = [p for p in out.parent.glob(out.name + ".*") if p.stat().st_size]
        text = "".join(p.read_text(errors="replace") for p in dumps)
        found = TOTALS.findall(text)
        if found:
            for dump in dumps:
                shutil.copy(dump, out.parent / "measured.out")
            return sum(int(n) for n in found)
        time.sleep(0.5)
    raise RuntimeError("callgrind wrote no dump")


async def publish_all(url: str, bodies: list[bytes], warmup: int, pid: int, out: Path) -> tuple[int, dict[str, Any]]:
    from aisle.serve import state as state_module
    from aisle.serve.schemas import EventsIn
    from aisle.serve.state import RedisState
    from aisle.serve.stream import EventStream

    state_module._TIMEOUT_S = 600.0  # under valgrind a call takes ~50 times longer
    state = RedisState(url)
    stream = EventStream(state)
    records = [[e.record() for e in EventsIn.model_validate(orjson.loads(b)).events] for b in bodies]
    for events in records[:warmup]:  # the script loaded, the connection open
        await stream.publish([e["event_id"] for e in events], events)
    subprocess.run(["callgrind_control", "--zero", str(pid)], check=True, capture_output=True)
    before = redis_figures(url)
    for events in records[warmup:]:
        dup = await stream.publish([e["event_id"] for e in events], events)
        assert not any(dup)
    after = redis_figures(url)
    count = instructions(pid, out)
    await state.close()
    return count, {"before": before, "after": after}


PARTS = {"call": "running the commands: the script, its Redis calls, their propagation to the AOF",
         "luaCreateArray": "the script's KEYS and ARGV made Lua strings",
         "luaRedisGenericCommand": "the script's Redis calls",
         "feedAppendOnlyFile": "the commands written out for the AOF",
         "processInputBuffer": "parsing the requests and running them (holds call)",
         "beforeSleep": "between event-loop rounds: the AOF write, active expiry",
         "serverCron": "timers (more of them under valgrind's slowdown)"}


def parts(dump: Path) -> dict[str, int]:
    """Inclusive instructions of the functions in PARTS (callgrind_annotate --inclusive)."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(dump)], capture_output=True,
                          text=True).stdout
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(.*?\)\s+\S*:(\w+)\b", line) or re.match(r"^\s*([\d,]+)\s+\S*:(\w+)\b", line)
        if m and m.group(2) in PARTS and m.group(2) not in out:
            out[m.group(2)] = int(m.group(1).replace(",", ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--per-user", type=int, default=1, help="events in a row from one shopper (events.batches)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("redis-server") is None:
        raise SystemExit("needs valgrind (callgrind) and redis-server: apt-get install valgrind redis-server")
    from procs import redis_report

    warmup = 20
    source = batches(2_000, args.batch, args.per_user)
    bodies = [next(source) for _ in range(warmup + args.batches)]
    with tempfile.TemporaryDirectory(prefix="aisle-events-redis-") as tmp:
        folder = Path(tmp)
        port = free_port()
        out = folder / "callgrind.out"
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                 shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                 "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                                 "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 120
            while True:
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("redis-server under valgrind did not start") from None
                    time.sleep(0.5)
            count, figures = asyncio.run(publish_all(url, bodies, warmup, proc.pid, out))
            split = parts(folder / "measured.out")
        finally:
            proc.terminate()
            proc.wait(60)
    events = args.batches * args.batch
    print(f"{events} events in {args.batches} batches of {args.batch} ({args.per_user} in a row per shopper): "
          f"redis-server executed {count / events:,.0f} instructions per event; machine: {machine.describe()}")
    for name, what in PARTS.items():
        if name in split:
            print(f"  {split[name] / events:>9,.0f} in {name} ({what})")
    print(redis_report(figures["before"], figures["after"], events).split("\n", 1)[1])


if __name__ == "__main__":
    main()
