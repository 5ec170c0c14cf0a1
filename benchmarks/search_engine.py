"""Per-query cost of the search engine alone (no HTTP, no cache): the logged queries of a store on a bundle's index.

What the load benchmark's uncached searches cost a worker. One thread; distinct queries in a seeded order, a
warm-up, then p50/p90/p99/mean milliseconds. To compare two versions of the code, run it from both checkouts
in turn on the same bundle (alternating, so load changes reach both):

    .venv/bin/python benchmarks/search_engine.py --bundle /tmp/b/b100k --queries aisle:/tmp/b/shop100k
    git worktree add /tmp/wt-old <commit> && \
        PYTHONPATH=/tmp/wt-old/src .venv/bin/python benchmarks/search_engine.py --bundle ... --queries ...
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import aisle
from aisle.search.engine import SearchEngine
from load import _logged_queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--queries", required=True, help="data source whose search log gives the queries")
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    threadpool_limits(1)
    engine = SearchEngine.load(args.bundle / "search")
    queries = sorted(set(_logged_queries(args.queries, args.seed)))
    random.Random(args.seed).shuffle(queries)
    queries = queries[: args.n]
    for q in queries[:50]:
        engine.search(q, page_size=20)
    ms = []
    for q in queries:
        t0 = time.perf_counter()
        engine.search(q, page_size=20)
        ms.append((time.perf_counter() - t0) * 1000)
    a = np.asarray(ms)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    print(json.dumps({"code": str(Path(aisle.__file__).parents[2]), "queries": len(a), "p50_ms": round(p50, 2),
                      "p90_ms": round(p90, 2), "p99_ms": round(p99, 2), "mean_ms": round(float(a.mean()), 2)}))


if __name__ == "__main__":
    main()
