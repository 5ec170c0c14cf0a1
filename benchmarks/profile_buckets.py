"""Where a worker's time per request goes: `load.py --profile` output (py-spy collapsed stacks) put in buckets.

Each stack goes in the first bucket it matches (the Redis read before the route, the recommendation before the
framework around it, ...); "sampled ms/request" is the bucket's samples / requests / the sampling rate. py-spy
counts a thread preempted inside a system call as busy, so socket writes weigh more here than in the CPU they use:
the workers' CPU per request that load.py prints is the figure that decides, this says where to look.

    .venv/bin/python benchmarks/load.py --bundle B --workers 2 --phases closed --closed-seconds 15 --store new \\
        --impressions on --profile /tmp/p/after --out after.json
    .venv/bin/python benchmarks/profile_buckets.py --before '/tmp/p/before.*.txt' before.json \\
        --after '/tmp/p/after.*.txt' after.json
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

RATE_HZ = 200  # load.py's py-spy rate

BUCKETS = [
    ("Redis history read (the client; its write is a system call)", ("_Reader.call", "RedisState.",
                                                                     "Services.shopper")),
    ("response write (socket)", ("RequestResponseCycle.send",)),
    ("`Runtime.recommend`", ("Runtime.recommend",)),
    ("`Runtime.query`", ("Runtime.query",)),
    ("FastAPI parameter validation", ("solve_dependencies",)),
    ("impression log (request path + flush thread)", ("Services.served", "ImpressionLog", "_impressions_to_stream")),
    ("metrics", ("Metrics.", "ServeMiddleware._observe")),
    ("route handler, orjson, the quick way's parsing", ("run_endpoint_function", "recommend (aisle/serve/routes",
                                                        "_list (aisle", "_ok (aisle", "answer (aisle/serve/quick")),
    ("Starlette/FastAPI layers + routing, ServeMiddleware", ("ServeMiddleware", "fastapi/", "starlette/")),
    ("uvicorn HTTP parsing, ASGI glue", ("httptools_impl", "uvicorn/middleware")),
]
OTHER = "event loop, background threads, other"


def bucketed(pattern: str) -> tuple[collections.Counter[str], int]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    folder, name = Path(pattern).parent, Path(pattern).name
    for path in sorted(folder.glob(name)):
        with path.open() as fh:
            for line in fh:
                stack, n = line.rstrip().rsplit(" ", 1)
                total += int(n)
                name = next((b for b, keys in BUCKETS if any(k in stack for k in keys)), OTHER)
                counts[name] += int(n)
    return counts, total


def requests(result: str) -> float:
    closed = json.loads(Path(result).read_text())["results"]["closed"]
    return closed["achieved_rate"] * closed["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", nargs=2, metavar=("STACKS_GLOB", "LOAD_JSON"), required=True)
    ap.add_argument("--after", nargs=2, metavar=("STACKS_GLOB", "LOAD_JSON"), required=True)
    args = ap.parse_args()
    (a, ta), (b, tb) = bucketed(args.before[0]), bucketed(args.after[0])
    ra, rb = requests(args.before[1]), requests(args.after[1])
    print("| where | before % | before sampled ms/req | after % | after sampled ms/req |\n|---|---:|---:|---:|---:|")
    for name in [b_ for b_, _ in BUCKETS] + [OTHER]:
        print(f"| {name} | {100 * a[name] / ta:.1f} | {1000 * a[name] / ra / RATE_HZ:.3f} | "
              f"{100 * b[name] / tb:.1f} | {1000 * b[name] / rb / RATE_HZ:.3f} |")
    print(f"| **all** (samples / requests) | {ta:,} / {ra:,.0f} | {1000 * ta / ra / RATE_HZ:.3f} | "
          f"{tb:,} / {rb:,.0f} | {1000 * tb / rb / RATE_HZ:.3f} |")


if __name__ == "__main__":
    main()
