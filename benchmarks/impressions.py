"""What the impression log costs, in CPU time (so the figures hold on a busy machine, where a load test's latency
does not): the request path's part (a request id and one buffered tuple), a worker's flush (the Redis stream
entry, or the frame for the store), and the store's append (DuckDB, into a log that already holds rows).

    .venv/bin/python benchmarks/impressions.py --lists 20000 --k 10

Each figure is the median of `--repeats` timings of CPU time (`time.thread_time`), per list or per row.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import machine
from aisle.serve.impressions import DETERMINISTIC, ImpressionLog, encode, new_request_id, to_frame
from aisle.store import Store


def _cpu(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def _consumer_cost(served: list, repeats: int) -> float:
    """Process CPU (DuckDB's threads included) of one consumer round writing two workers' flushes of `served` from
    the Redis stream `aisle:impressions` into a DuckDB store (one file open per round, as in a worker), per list."""
    import sys

    import redis

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' throwaway Redis
    from tests.redisserver import redis_server

    from aisle.serve.sink import StoreSink
    from aisle.serve.stream import Consumer

    with redis_server(aof=False) as url, tempfile.TemporaryDirectory() as tmp:
        r = redis.Redis.from_url(url)
        sink = StoreSink(Path(tmp) / "s.duckdb")
        consumer = Consumer(url, sink.locked, stream="impressions", count=1_000)
        times = []
        try:
            for n in range(repeats + 1):
                for worker in range(2):
                    batch = [(f"{s[0]}-{n}-{worker}", *s[1:]) for s in served]
                    r.xadd("aisle:impressions", {"i": encode(batch)})
                t0 = time.process_time()
                consumer.step()
                if n:  # the first round creates the file and the group
                    times.append((time.process_time() - t0) / (2 * len(served)))
        finally:
            consumer.close()
            sink.close()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lists", type=int, default=20_000, help="Served lists per timing.")
    ap.add_argument("--k", type=int, default=10, help="Items per list.")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    items = [f"i{n:06d}" for n in range(args.k)]
    scores = [1.0 / (n + 1) for n in range(args.k)]
    batches: list[list] = []
    log = ImpressionLog(batches.append, flush_s=3600)

    def request_path() -> None:
        for n in range(args.lists):
            rid = new_request_id()
            log.record(rid, "recommendations", items, scores, policy=DETERMINISTIC, user_id=f"u{n}",
                       session_id="s", model_version="v1", arm="a")

    record = _cpu(request_path, args.repeats) / args.lists
    log.flush()
    served = batches[0]
    stream = _cpu(lambda: encode(served), args.repeats) / len(served)
    frame_cost = _cpu(lambda: to_frame(served), args.repeats) / len(served)
    frame = to_frame(served)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.duckdb") as store:
        store.append_impressions(frame)  # the log is not empty: the duplicate check has rows to skip
        shifted = [frame.with_columns(frame["request_id"] + f"-{r}") for r in range(args.repeats)]
        it = iter(shifted)
        append = _cpu(lambda: store.append_impressions(next(it)), args.repeats) / frame.height
    log.close()
    consumer = _consumer_cost(served, args.repeats)
    print(f"{'step':<44}{'CPU us':>10}  per")
    print(f"{'request path: request id + buffered tuple':<44}{record * 1e6:>10.2f}  list of {args.k}")
    print(f"{'flush, Redis state: stream entry (orjson)':<44}{stream * 1e6:>10.2f}  list")
    print(f"{'flush, memory state: frame for the store':<44}{frame_cost * 1e6:>10.2f}  list")
    print(f"{'DuckDB append (store writer / consumer)':<44}{append * 1e6:>10.2f}  row")
    print(f"{'Redis consumer -> DuckDB (process CPU)':<44}{consumer * 1e6:>10.2f}  list")
    print(f"lists per timing: {args.lists:,}, median of {args.repeats}; machine: {machine.describe()}")


if __name__ == "__main__":
    main()
