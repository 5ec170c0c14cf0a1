"""What exploration costs a recommendation request, in CPU time, in process (no HTTP, no other traffic).

Two runtimes over the same loaded bundle, exploration off and on (`--share`, `--policy`), answer the same random
known shoppers, alternating request by request so that whatever else the machine does weighs on both alike. Each
request's CPU is `time.thread_time` around `Runtime.recommend` (the pipeline, the rules and, when on, the exploring
slot); the difference is what exploration adds. Wall-clock latency under load is benchmarks/load.py's
(`--explore on|off`), to run on a quiet machine.

    nice -n 10 .venv/bin/python benchmarks/explore_cpu.py --bundle BUNDLE [--requests 3000 --share 0.2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from machine import describe  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from aisle.bundle import Bundle
from aisle.config import ExploreConfig, Settings
from aisle.optimize.serving import optimize_pipeline
from aisle.serve.runtime import Runtime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--requests", type=int, default=3_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--policy", default="thompson", choices=("thompson", "linucb"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    off = Settings(bundle=Path(args.bundle))
    on = off.model_copy(update={"explore": ExploreConfig(enabled=True, share=args.share, policy=args.policy)})
    bundle = Bundle.load(args.bundle, search=False)
    bundle.pipeline = optimize_pipeline(bundle.pipeline, off.inference)
    runtimes = {"off": Runtime(bundle, off), "on": Runtime(bundle, on)}
    pool = len(runtimes["on"].explorer.pool) if runtimes["on"].explorer is not None else 0
    rng = np.random.default_rng(args.seed)
    users = [str(u) for u in rng.choice(bundle.users.ids, size=args.requests)]
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    explored = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("requests (off and on, alternating)", total=args.requests)
        for n, user in enumerate(users):
            for name in (("off", "on") if n % 2 else ("on", "off")):
                rt = runtimes[name]
                t0 = time.thread_time()
                out = rt.recommend(rt.query(user, [], False), args.k)
                cpu[name].append(time.thread_time() - t0)
                if name == "on":
                    explored += any(c["explanation"]["type"] == "exploration" for c in out["items"])
            bar.update(task, advance=1)
    print(f"\n{describe()}")
    print(f"bundle {args.bundle}: {len(bundle.items):,} items, {len(bundle.users):,} shoppers; exploration "
          f"{args.policy}, share {args.share:g}, pool {pool} cold items; {args.requests:,} requests each, k={args.k}; "
          f"{explored:,} lists explored\n")
    print("| exploration | CPU ms per request, mean | p50 | p99 |")
    print("|---|---|---|---|")
    for name in ("off", "on"):
        v = np.array(cpu[name]) * 1000
        print(f"| {name} | {v.mean():.3f} | {np.percentile(v, 50):.3f} | {np.percentile(v, 99):.3f} |")
    diff = (np.array(cpu["on"]) - np.array(cpu["off"])) * 1000
    print(f"\nadded by exploration: {diff.mean():+.3f} ms per request on average "
          f"({diff.mean() / (np.mean(cpu['off']) * 1000):+.1%})")


if __name__ == "__main__":
    main()
