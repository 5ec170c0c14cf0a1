"""Catalog upserts on a served bundle: how long `PUT /items` takes, and whether every worker serves the items at once.

    nice -n 5 .venv/bin/python benchmarks/catalog_upsert.py --bundle /work/bench-data/b100k-new --puts 200
    PYTHONPATH=/work/base-catalog/src .venv/bin/python benchmarks/catalog_upsert.py --bundle ... --puts 3  # old code

Starts redis-server and `aisle serve --workers 2 --state redis://...` on the bundle, pins one keep-alive client to
each worker (by the pid `/health` reports; tests/serving.clients_per_worker), then sends `--puts` PUT /items of
`--size` items each, half new (a template item's brand and category, its title behind a word no other item has)
and half changed (retitled behind another such word, repriced, every fourth made unavailable), alternating the
worker that takes the PUT. Right after each answer, on *both* workers:

* searchable: a search for the new items' word returns exactly those items, and one for the changed items' word
  returns exactly the changed items that are still available (search leaves unavailable items out);
* recommendable, as a new item can honestly be before anyone has touched it: its item page has neighbours
  (`/items/{id}/similar` knows the item and answers its neighbours, not the trending fallback), and it is shown on
  the page of the item it resembles most (`/items/{neighbour}/similar?k=100` lists it): cold start places a new
  item among the items it resembles, which is where recommendations pick it up.

Reports p50/p99/max of the PUT as the client saw it, how many checks failed (a failed request counts), the read
checks' latency, and what the per-read catalog version check (one Redis GET) costs. The client shares the
machine's 2 cores with the workers and Redis. `--in-process` times `Runtime.with_upserts` alone (wall and CPU),
what one PUT costs a worker without HTTP, Redis or a second worker beside it (`--profile N`: where that CPU goes,
the top N functions on thread CPU time; `--suggest`: and the CPU the storefront's suggestion index then costs).
With `PYTHONPATH` pointing at older code that lacks the pid in /health, one unpinned client does everything and the
table says the workers could not be told apart.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' throwaway Redis and the per-worker clients

from tests.redisserver import free_port, redis_server  # noqa: E402
from tests.serving import clients_per_worker, wait_ready  # noqa: E402


def word(prefix: str, n: int) -> str:
    """A word no catalog item has (letters only: the analyzer keeps it whole), one per PUT."""
    letters = ""
    for _ in range(4):
        n, r = divmod(n, 26)
        letters += chr(97 + r)
    return f"{prefix}{letters}"


def upserts(catalog: pl.DataFrame, n: int, size: int, rng: np.random.Generator) -> tuple[list[dict[str, Any]], ...]:
    """PUT number `n`: (new items, changed items) as API records."""
    picks = rng.choice(catalog.height, size, replace=False)
    new, changed = [], []
    w_new, w_changed = word("zqv", n), word("kxw", n)
    for j, row in enumerate(picks.tolist()):
        it = catalog.row(row, named=True)
        base = {"brand": it["brand"], "categories": list(it["categories"] or []), "currency": "USD",
                "description": it["description"] or "", "attributes": json.loads(it["attributes"] or "{}")}
        if j < size // 2:
            new.append({**base, "item_id": f"bench-{n}-{j}", "title": f"{w_new} {it['title']}",
                        "price": round(float(rng.uniform(5, 200)), 2)})
        else:
            changed.append({**base, "item_id": it["item_id"], "title": f"{w_changed} {it['title']}",
                            "price": round(float(rng.uniform(5, 200)), 2), "available": (n + j) % 4 != 0})
    return new, changed


def check(client: httpx.Client, n: int, new: list[dict[str, Any]], changed: list[dict[str, Any]],
          read_ms: list[float]) -> list[str]:
    """The searchable / recommendable checks on one worker; what failed."""
    failed: list[str] = []

    def get(path: str, **params: Any) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        read_ms.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            failed.append(f"{path}: {r.status_code}")
            return None
        return r.json()

    new_ids = {it["item_id"] for it in new}
    got = get("/search", q=word("zqv", n), page_size=50)
    if got is not None and {h["item_id"] for h in got["hits"]} != new_ids:
        failed.append("new items not found")
    want = {it["item_id"] for it in changed if it["available"]}
    got = get("/search", q=word("kxw", n), page_size=50)
    if got is not None and {h["item_id"] for h in got["hits"]} != want:
        failed.append("changed items not found as changed")
    for j, it in enumerate(new):
        page = get(f"/items/{it['item_id']}/similar", k=5)
        if page is None:
            continue
        if page.get("item") is None or not page["items"] or "fallback" in page:
            failed.append(f"{it['item_id']} has no neighbours")
            continue
        if j == 0:
            back = get(f"/items/{page['items'][0]['item_id']}/similar", k=100)
            if back is not None and it["item_id"] not in {i["item_id"] for i in back["items"]}:
                failed.append(f"{it['item_id']} not on its neighbour's page")
    return failed


def version_check_cost(redis_url: str, n: int = 2000) -> tuple[float, float]:
    """Mean and p99 (µs) of `RedisState.catalog_version()`: what every read pays before it is answered."""
    from aisle.serve.state import RedisState

    async def run() -> list[float]:
        state = RedisState(redis_url)
        if not hasattr(state, "catalog_version"):
            await state.close()
            return []
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await state.catalog_version()
            out.append((time.perf_counter() - t0) * 1e6)
        await state.close()
        return out

    took = asyncio.run(run())
    return (float(np.mean(took)), float(np.percentile(took, 99))) if took else (float("nan"), float("nan"))


def in_process(args: argparse.Namespace, catalog: pl.DataFrame, rng: np.random.Generator) -> dict[str, Any]:
    """`Runtime.with_upserts` alone, in this process (no HTTP, no Redis, no second worker): wall and CPU time of
    the same upserts, i.e. what one PUT costs a worker."""
    import gc

    from aisle.bundle import Bundle
    from aisle.config import Settings
    from aisle.serve.runtime import Runtime

    settings = Settings(bundle=args.bundle)
    rt = Runtime(Bundle.load(args.bundle, require_serving=True), settings)
    if args.suggest:
        t0 = time.thread_time()
        suggester(rt)  # the storefront asked for suggestions once before the upserts
        first_build_ms = (time.thread_time() - t0) * 1000
    gc.collect()
    gc.freeze()  # as a serving worker does after loading (settle_heap)
    wall, cpu, suggest_cpu = [], [], []
    profile = cProfile.Profile(time.thread_time) if args.profile else None  # CPU of this thread: load-independent
    for n in range(args.puts):
        new, changed = upserts(catalog, n, args.size, rng)
        records = [{**it, "attributes": json.dumps(it["attributes"], sort_keys=True), "created_at": None,
                    "available": it.get("available", True)} for it in new + changed]
        t0, c0 = time.perf_counter(), time.thread_time()
        if profile is not None:
            profile.enable()
        rt = rt.with_upserts(records)
        if profile is not None:
            profile.disable()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)  # this thread: not the idle spinning of library pools
        if args.suggest:  # the next suggestion's index over the catalog after this upsert
            c0 = time.thread_time()
            suggester(rt)
            suggest_cpu.append((time.thread_time() - c0) * 1000)
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
    out = {"bundle": str(args.bundle), "items": catalog.height, "upserts": args.puts, "size": args.size,
           "wall_ms": {"p50": float(np.percentile(wall, 50)), "p99": float(np.percentile(wall, 99))},
           "cpu_ms": {"p50": float(np.percentile(cpu, 50)), "p99": float(np.percentile(cpu, 99))},
           "load_average": os.getloadavg()[0], "machine": machine.describe()}
    if args.suggest:
        both = np.asarray(cpu) + np.asarray(suggest_cpu)
        out |= {"suggester_first_build_cpu_ms": first_build_ms,
                "suggest_cpu_ms": {"p50": float(np.percentile(suggest_cpu, 50)),
                                   "p99": float(np.percentile(suggest_cpu, 99))},
                "upsert_and_suggest_cpu_ms": {"p50": float(np.percentile(both, 50)),
                                              "p99": float(np.percentile(both, 99))}}
    return out


def suggester(rt: Any) -> Any:
    """The search box's suggestion index for runtime `rt`, as the first `/api/web/suggest` after a change gets it:
    the runtime's own, kept up by each upsert (this code), or, in code before that (`PYTHONPATH` at an older
    checkout), a rebuild over the whole catalog, which is what `aisle.web.api` did on every runtime change."""
    if hasattr(rt, "suggester"):
        return rt.suggester
    from aisle.web.suggest import Suggester

    return Suggester.from_runtime(rt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=Path("/work/bench-data/b100k-new"))
    ap.add_argument("--puts", type=int, default=200)
    ap.add_argument("--size", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    ap.add_argument("--in-process", action="store_true", help="time Runtime.with_upserts alone, no server")
    ap.add_argument("--suggest", action="store_true",
                    help="with --in-process: also time the search box's suggestion index after each upsert")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="with --in-process: cProfile the upserts on thread CPU time, print the top N functions")
    args = ap.parse_args()
    catalog = pl.read_parquet(args.bundle / "catalog.parquet")
    rng = np.random.default_rng(args.seed)
    if args.in_process:
        out = in_process(args, catalog, rng)
        print(json.dumps(out, indent=2))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as redis_url:
        port = free_port()
        log = Path(tmp) / "serve.log"
        server = subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(args.bundle), "--port",
                                   str(port), "--workers", str(args.workers), "--state", redis_url],
                                  stdout=log.open("ab"), stderr=subprocess.STDOUT, env=os.environ.copy())
        url = f"http://127.0.0.1:{port}"
        try:
            t0 = time.perf_counter()
            wait_ready(url, server, seconds=900, output=log.read_text)
            print(f"{args.workers} workers ready in {time.perf_counter() - t0:.0f} s", flush=True)
            try:
                clients = clients_per_worker(url, args.workers, timeout=900)
                pinned = True
            except (KeyError, AssertionError):  # older code: /health without a pid
                clients = {0: httpx.Client(base_url=url, timeout=900)}
                pinned = False
            put_ms, server_ms, read_ms, failures = [], [], [], 0
            examples: list[str] = []
            pids = sorted(clients)
            for n in range(args.puts):
                new, changed = upserts(catalog, n, args.size, rng)
                writer = clients[pids[n % len(pids)]]
                t1 = time.perf_counter()
                r = writer.put("/items", json={"items": new + changed})
                put_ms.append((time.perf_counter() - t1) * 1000)
                if r.status_code != 200:
                    failures += 1
                    examples.append(f"PUT {n}: {r.status_code} {r.text[:200]}")
                    continue
                server_ms.append(r.json()["took_ms"])
                for pid in pids:
                    failed = check(clients[pid], n, new, changed, read_ms)
                    failures += len(failed)
                    examples += [f"PUT {n}, worker {pid}: {f}" for f in failed][:3]
                if (n + 1) % 20 == 0 or n + 1 == args.puts:
                    print(f"  {n + 1}/{args.puts} PUTs, p99 so far {np.percentile(put_ms, 99):.1f} ms, "
                          f"{failures} failed checks", flush=True)
            mean_us, p99_us = version_check_cost(redis_url)
        finally:
            server.terminate()
            server.wait(timeout=60)
    put = np.asarray(put_ms)
    out = {"bundle": str(args.bundle), "items": catalog.height, "puts": args.puts, "size": args.size,
           "workers": args.workers, "pinned_workers": pinned,
           "put_ms": {"p50": float(np.percentile(put, 50)), "p99": float(np.percentile(put, 99)),
                      "max": float(put.max())},
           "server_took_ms_p50": float(np.percentile(server_ms, 50)) if server_ms else None,
           "read_ms": {"p50": float(np.percentile(read_ms, 50)), "p99": float(np.percentile(read_ms, 99))}
           if read_ms else None,
           "failed_checks": failures, "checks_per_put": len(pids) * (2 + args.size // 2 + 1),
           "version_check_us": {"mean": mean_us, "p99": p99_us}, "machine": machine.describe()}
    print(json.dumps(out, indent=2))
    for e in examples[:10]:
        print("failed:", e)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
