"""What one `aisle worker` refresh costs against the number of new events, on a large store.

A DuckDB store gets the catalog and the oldest `--base-events` events of `--data` (by time); a registry gets
`--bundle` as its current version, marked as fitted up to that point (its watermark: the store's position after the
base events; the bundle's own counts do not change what a refresh costs). Then, for each size of `--new`, that many
of the following events are appended and one refresh runs (`Worker.run("refresh")`, in process): the time of each
step is the decision's own record (read the new events + the items table, load the serving version, fold, save the
new version, health-check it), so the table shows what grows with the new events and what is a fixed cost.

    nice -n 5 .venv/bin/python benchmarks/refresh.py --data aisle:/work/bench-data/shop100k \
        --bundle /work/bench-data/b100k --base-events 1000000 --new 10000,100000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from aisle.config import Settings, WorkerConfig
from aisle.data.readers import read_dataspec
from aisle.registry import Decision, Registry
from aisle.store import open_store
from aisle.worker import Worker
from machine import describe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="DATASPEC of the shop (e.g. aisle:/work/bench-data/shop100k)")
    ap.add_argument("--bundle", type=Path, required=True, help="a serving bundle of that shop (aisle train)")
    ap.add_argument("--base-events", type=int, default=1_000_000)
    ap.add_argument("--new", default="10000,100000", help="new events per refresh, comma-separated")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.new.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="aisle-refresh-"))
    work.mkdir(parents=True, exist_ok=True)
    print(describe())
    data = read_dataspec(args.data)
    events = data.events.sort("timestamp")
    if args.base_events + sum(sizes) > events.height:
        raise SystemExit(f"{args.data} has {events.height:,} events: fewer than {args.base_events + sum(sizes):,}")
    db = work / "store.duckdb"
    db.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open_store(db) as store:
        store.upsert_items(data.items)
        store.upsert_users(data.users)
        store.append_events(events.slice(0, args.base_events))
        _, position = store.read_events_since(0)
    print(f"store: {args.base_events:,} events, {data.items.height:,} items in {time.perf_counter() - t0:.0f}s")
    reg_root = work / "registry"
    shutil.rmtree(reg_root, ignore_errors=True)
    reg = Registry(reg_root)
    reg.publish(args.bundle, Decision("refit", True, "benchmark base", extra={
        "watermark": position, "refit_at": time.time()}))
    settings = Settings(bundle=reg_root, store=db, worker=WorkerConfig(dense=False, refit_events=0,
                                                                       latency_budget_ms=10_000))
    worker = Worker(settings)
    worker.start()
    rows = []
    at = args.base_events
    try:
        for n in sizes:
            with open_store(db) as store:
                store.append_events(events.slice(at, n))
            at += n
            t0 = time.perf_counter()
            out = worker.run("refresh")
            total = time.perf_counter() - t0
            assert out.decision is not None and out.decision.promoted, out.decision
            steps = out.decision.extra["seconds"]
            rows.append({"new events": n, **{k: steps[k] for k in ("read", "load", "fold", "save", "health")},
                         "total s": round(total, 2)})
    finally:
        worker.lease.release()
    print(pl.DataFrame(rows))
    print("| new events | read | load | fold | save | health | total (s) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['new events']:,} | {r['read']:.2f} | {r['load']:.2f} | {r['fold']:.2f} | {r['save']:.2f} | "
              f"{r['health']:.2f} | {r['total s']:.2f} |")


if __name__ == "__main__":
    main()
