"""Search latency of two checkouts back to back: the issue 25 check "p95 unchanged within 10%".

Why a driver: one latency figure on a shared machine means little (the neighbours' load moves it more than a
change does), so the old and the new code are timed alternately, in pairs, by the same script
(`benchmarks/search_latency.py`, this checkout's copy, over each checkout's `src`), on the same warm embedding
cache, and the verdict is the ratio of the p95s pair by pair, beside the thread CPU time (which the load disturbs
far less) and the load average of each run.

    git worktree add --detach /tmp/search-base 4dff048     # the old code
    .venv/bin/python benchmarks/search_latency_ab.py --old /tmp/search-base --new . --pairs 2 --json ab.json

The 50,000-item catalog's item vectors come from the embedding cache; the first run embeds them (~10-15 min on
2 quiet cores): warm it once before timing anything, e.g. with a single `search_latency.py --no-append` run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

SCRIPT = Path(__file__).resolve().parent / "search_latency.py"
LIMIT = 1.10  # the new p95 may be at most 10% above the old one


def run_one(checkout: Path, args: argparse.Namespace, out: Path) -> dict:
    """One `search_latency.py` run over `checkout`'s sources; its JSON result."""
    env = {**os.environ, "PYTHONPATH": str((checkout / "src").resolve()), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--items", str(args.items), "--events", str(args.events),
           "--queries", str(args.queries), "--no-append", "--json", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="checkout of the baseline code (a git worktree)")
    ap.add_argument("--new", type=Path, default=Path(), help="checkout of the code under test")
    ap.add_argument("--pairs", type=int, default=2, help="old/new pairs, run alternately")
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=None, help="also write every run's numbers here")
    args = ap.parse_args()
    for name, path in (("--old", args.old), ("--new", args.new)):
        if not (path / "src" / "aisle").is_dir():
            ap.error(f"{name} {path}: not an Aisle checkout (no src/aisle)")

    console = Console(stderr=True)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(1, args.pairs + 1):
            for label, checkout in (("old", args.old), ("new", args.new)):
                console.print(f"pair {pair}/{args.pairs}: {label} ({checkout}) ...")
                res = run_one(checkout, args, Path(tmp) / f"{label}{pair}.json")
                runs.append({"pair": pair, "code": label, "checkout": str(checkout), **res})

    table = Table(title=f"search latency, {args.items:,} items, {args.queries:,} queries, old vs new back to back")
    for col in ("pair", "code", "p50 ms", "p95 ms", "p99 ms", "CPU p95 ms", "load", "p95 new / old"):
        table.add_column(col, justify="right")
    verdicts = []
    for r in runs:
        ratio = ""
        if r["code"] == "new":
            old = next(o for o in runs if o["pair"] == r["pair"] and o["code"] == "old")
            verdicts.append(r["p95_ms"] / old["p95_ms"])
            ratio = f"{verdicts[-1]:.3f}"
        table.add_row(str(r["pair"]), r["code"], f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['cpu_p95_ms']:.2f}", f"{r['load_avg'][0]:.1f}", ratio)
    Console().print(table)
    worst = max(verdicts)
    Console().print(f"worst pair: new p95 = {worst:.3f} x old ({'within' if worst <= LIMIT else 'NOT within'} 10%)")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, "p95_ratios": verdicts}, indent=2) + "\n")


if __name__ == "__main__":
    main()
