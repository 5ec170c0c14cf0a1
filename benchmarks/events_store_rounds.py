"""Does a stream consumer's store write get dearer as the store grows? The consumer's round against a growing store,
without HTTP or Redis, timed by CPU (so a busy machine changes the figures little).

    .venv/bin/python benchmarks/events_store_rounds.py --store duckdb --events 6000000 --round 15000
    .venv/bin/python benchmarks/events_store_rounds.py --store postgresql --events 6000000 --round 15000

Appends `--events` distinct events (shaped as `events.py` posts them: ids `bench-N`, 5,000 shoppers, one event a
millisecond) in rounds of `--round` events the way `aisle.serve.stream.Consumer` writes a round: the store opened
for the round (`StoreSink.locked`: a DuckDB file under its lock with one thread, a PostgreSQL pool), one
`append_events(fresh=True)`, closed. Reports, per `--every` stored events, the CPU milliseconds per round of opening,
appending and closing (DuckDB: this process, the checkpoint at close included; PostgreSQL: this process and the
server's backends) and the wall milliseconds. A part whose figure rises with the stored events makes the
consumer's round, and so the mean of the lag's sawtooth, rise over a long run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

import machine
from procs import postgres_pid, tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' throwaway PostgreSQL server

from aisle.serve.sink import StoreSink  # noqa: E402
from aisle.types import EVENT_SCHEMA  # noqa: E402
from events import store_url  # noqa: E402


def round_frame(start: int, n: int, t0: datetime, n_items: int = 2_000) -> pl.DataFrame:
    """Events `start` .. `start + n - 1` as `events.py`'s client posts them."""
    k = pl.int_range(start, start + n, eager=True)
    items = np.random.default_rng(start).integers(0, n_items, n)
    frame = pl.DataFrame({"k": k, "event_id": "bench-" + k.cast(pl.String), "user_id": "u" + (k % 5000).cast(pl.String),
                          "item_id": "i" + pl.Series(items).cast(pl.String).str.zfill(5)})
    return frame.with_columns(pl.lit("view").alias("event_type"),
                              (pl.lit(t0) + pl.duration(milliseconds=pl.col("k"))).cast(EVENT_SCHEMA["timestamp"])
                              .alias("timestamp")).drop("k")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", choices=("duckdb", "postgresql"), default="duckdb")
    ap.add_argument("--events", type=int, default=6_000_000)
    ap.add_argument("--round", type=int, default=15_000, help="events a round (events.py at 20,000/s: ~15,000)")
    ap.add_argument("--every", type=int, default=1_000_000, help="report per this many stored events")
    ap.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a PostgreSQL server setting (shared_buffers=1GB); repeatable")
    ap.add_argument("--out")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aisle-rounds-")))
        url = stack.enter_context(store_url(args.store, folder, dict(x.split("=", 1) for x in args.pg_setting)))
        sink = StoreSink(url, threads=1)
        stack.callback(sink.close)
        postmaster = postgres_pid(url) if args.store == "postgresql" else None
        t0 = datetime.now(UTC) - timedelta(hours=2)
        window: list[dict[str, float]] = []
        for start in tqdm(range(0, args.events, args.round), desc="rounds", unit="round"):
            frame = round_frame(start, min(args.round, args.events - start), t0)
            laps = [(time.perf_counter(), time.thread_time(), tree_cpu_seconds(postmaster))]
            with sink.locked() as store:
                laps.append((time.perf_counter(), time.thread_time(), tree_cpu_seconds(postmaster)))
                store.append_events(frame, fresh=True)
                laps.append((time.perf_counter(), time.thread_time(), tree_cpu_seconds(postmaster)))
            laps.append((time.perf_counter(), time.thread_time(), tree_cpu_seconds(postmaster)))
            window.append({f"{part}_{kind}": (b[i] - a[i]) * 1000
                           for part, a, b in zip(("open", "append", "close"), laps, laps[1:], strict=False)
                           for i, kind in enumerate(("wall", "cpu", "server_cpu"))})
            stored = start + frame.height
            if stored % args.every < args.round or stored == args.events:
                rows.append({"stored_millions": round(stored / 1e6, 2), "rounds": len(window),
                             **{k: round(float(np.mean([w[k] for w in window])), 1) for k in window[0]}})
                window = []
    head = ["stored_millions", "rounds", *(f"{p}_{k}" for k in ("cpu", "server_cpu", "wall")
                                           for p in ("open", "append", "close"))]
    print("ms per round (mean over the rounds since the previous line):")
    print(" ".join(f"{h:>17}" for h in head))
    for row in rows:
        print(" ".join(f"{row[h]:>17}" for h in head))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "store": args.store, "round": args.round,
                                              "events": args.events, "pg_settings": args.pg_setting,
                                              "machine": machine.describe()}, indent=2))


if __name__ == "__main__":
    main()
