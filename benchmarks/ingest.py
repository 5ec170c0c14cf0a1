"""Ingest throughput: Parquet -> validation -> DuckDB store, for synthetic logs of several sizes.

Each size runs in a fresh child process so its peak memory (max RSS) is its own. Reported per size:
read+validate seconds, store seconds, events/second end to end, an idempotent re-ingest, and peak RSS.

    .venv/bin/python benchmarks/ingest.py                 # 1M and 10M events
    .venv/bin/python benchmarks/ingest.py --sizes 1000000  # one size
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import machine


def _child(size: int, workdir: Path) -> dict[str, float]:
    """Generate (cached), then time read+validate and store of `size` events in this process."""
    from aisle.data.readers import read_dataspec
    from aisle.data.synthetic import SyntheticConfig, generate
    from aisle.store import Store

    src = workdir / f"synthetic-{size}"
    if not (src / "events.parquet").exists():
        n_users = max(2_000, size // 100)
        n_items = max(5_000, size // 200)
        generate(SyntheticConfig(n_items=n_items, n_users=n_users, n_events=size, seed=0)).write(src)
    db = workdir / f"bench-{size}.duckdb"
    db.unlink(missing_ok=True)
    t0 = time.perf_counter()
    data = read_dataspec(f"aisle:{src}")
    t1 = time.perf_counter()
    with Store(db) as store:
        first = store.ingest(data)
        t2 = time.perf_counter()
        again = store.ingest(data)
        t3 = time.perf_counter()
    db.unlink(missing_ok=True)
    return {
        "events": data.events.height,
        "inserted": first["events"].inserted,
        "reingest_inserted": again["events"].inserted,
        "read_validate_s": t1 - t0,
        "store_s": t2 - t1,
        "reingest_s": t3 - t2,
        "events_per_s": data.events.height / (t2 - t0),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000", help="comma-separated event counts")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "aisle-bench-ingest")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(_child(args.child, args.workdir)))
        return
    console = Console()
    table = Table(title=f"Ingest throughput from Parquet ({machine.describe()})", title_justify="left")
    for col in ("events", "read+validate s", "store s", "events/s", "re-ingest s (new rows)", "peak RSS GB"):
        table.add_column(col, justify="right")
    for size in (int(s) for s in args.sizes.split(",")):
        with console.status(f"{size:,} events (generation is cached in {args.workdir}) ..."):
            out = subprocess.run([sys.executable, __file__, "--child", str(size), "--workdir", str(args.workdir)],
                                 check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        assert r["inserted"] == r["events"] and r["reingest_inserted"] == 0, r
        table.add_row(f"{r['events']:,}", f"{r['read_validate_s']:.2f}", f"{r['store_s']:.2f}",
                      f"{r['events_per_s']:,.0f}", f"{r['reingest_s']:.2f} ({r['reingest_inserted']})",
                      f"{r['peak_rss_gb']:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
