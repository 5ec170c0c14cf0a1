"""Search latency per query on a 50,000-product synthetic catalog, query embedding included.

The whole request is timed, by the wall clock and by the thread's CPU time (which a busy shared machine disturbs
far less): `SearchEngine.search`, i.e. parse, spelling, MiniLM query embedding, field BM25, dense HNSW search, RRF,
LambdaMART rerank of the first 150 candidates, result set, facets, one page of hits; one query at a time on one
thread, with the query-embedding cache off. The reranker is trained first on the synthetic store's own search log
(clicks after a search), with the search memory of that log where the code has one (as `aisle train` builds
both with `[search] memory = true`), so the timed path is the longest production one. Queries are the distinct
queries shoppers typed in the synthetic log (typos, prices, brands, sizes included).

    .venv/bin/python benchmarks/search_latency.py                       # 50k items, 1000 queries
    .venv/bin/python benchmarks/search_latency.py --items 5000 --queries 200 --no-append
    PYTHONPATH=../base/src .venv/bin/python benchmarks/search_latency.py --no-append --json old.json  # other code

Item embeddings are cached (sha1 of model + text) in $AISLE_CACHE or ~/.cache/aisle, so only the first run
pays for embedding the catalog (~10-15 min for 50k on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch / faiss / LightGBM threads per query")
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache folder")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = ap.parse_args()

    import numpy as np
    import polars as pl
    import torch

    from aisle.data.synthetic import SyntheticConfig, generate
    from aisle.search import evaluate as ev
    from aisle.search.embed import Embedder, default_cache_dir
    from aisle.search.engine import SearchEngine

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    store = generate(SyntheticConfig(n_items=args.items, n_users=max(2_000, args.items // 10),
                                     n_events=args.events, seed=0))
    t_gen = time.perf_counter() - t0
    cache = args.cache or default_cache_dir()
    embedder = Embedder(cache, query_cache_size=0)
    pop = store.events.filter(pl.col("event_type") == "purchase").group_by("item_id").len()
    t0 = time.perf_counter()
    engine = SearchEngine.build(store.items, embedder=embedder, popularity=dict(pop.iter_rows()), progress=True)
    t_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    judg = ev.judgments_from_events(store.events)
    judged = ev.judged_queries(judg, engine)
    memories = None
    if hasattr(ev, "cross_fitted_memories"):  # code with the search memory (issue 25): built as `aisle train` does
        memories, memory = ev.cross_fitted_memories(engine, judged, np.arange(len(judged)))
    prep = ev.prepare(engine, [j.query for j in judged], **({"memories": memories} if memories else {}))
    engine.reranker = ev.fit(prep, ev.head_gains(prep, judged), list(range(len(prep))))
    if memories:
        engine.memory = memory
    t_train = time.perf_counter() - t0

    qs = store.events.filter(pl.col("event_type") == "search")["query"].unique().sort().to_list()
    rng = np.random.default_rng(1)
    queries = [qs[i] for i in rng.permutation(len(qs))[:args.queries]]
    for q in queries[:20]:  # warm-up: model load, first-call allocations
        engine.search(f"{q} warmup")
    lat, cpu, emb, totals = [], [], [], []
    for q in queries:
        t, c = time.perf_counter(), time.thread_time()
        r = engine.search(q)
        cpu.append((time.thread_time() - c) * 1000)
        lat.append((time.perf_counter() - t) * 1000)
        totals.append(r.total)
    for q in queries:
        t = time.perf_counter()
        embedder.embed_query(q)
        emb.append((time.perf_counter() - t) * 1000)

    res = {
        "items": len(engine.catalog), "queries": len(queries), "threads": args.threads,
        "rerank_depth": engine.config.rerank_depth,
        "dense_index": engine.dense.kind if engine.dense is not None else None,
        "p50_ms": round(_pct(lat, 50), 2), "p95_ms": round(_pct(lat, 95), 2), "p99_ms": round(_pct(lat, 99), 2),
        "mean_ms": round(float(np.mean(lat)), 2), "cpu_p50_ms": round(_pct(cpu, 50), 2),
        "cpu_p95_ms": round(_pct(cpu, 95), 2), "cpu_p99_ms": round(_pct(cpu, 99), 2),
        "embed_p50_ms": round(_pct(emb, 50), 2),
        "embed_p95_ms": round(_pct(emb, 95), 2), "median_total_hits": int(np.median(totals)),
        "build_s": round(t_build, 1), "generate_s": round(t_gen, 1), "reranker_train_s": round(t_train, 1),
        "reranker_queries": len(judged), "memory_queries": len(memory) if memories else 0,
        "cpu": machine.cpu(), "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()], "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if not args.no_append:
        _append(res, " ".join(["python", "benchmarks/search_latency.py", *sys.argv[1:]]))


def _append(res: dict, command: str) -> None:
    block = (
        f"\n### Latency, {res['items']:,}-product synthetic catalog ({res['date']})\n\n"
        f"    .venv/bin/{command}\n\n"
        f"Machine: {res['cpu']}, {res['cores']} cores (shared; load average {res['load_avg'][0]} at the end), "
        f"{res['threads']} thread per query. Whole `SearchEngine.search` per query ({res['queries']:,} distinct "
        f"logged queries, query-embedding cache off): parse + spelling, MiniLM query embedding, field BM25, "
        f"dense {res['dense_index']}, RRF, LambdaMART rerank of {res['rerank_depth']} candidates, result set, "
        "facets, one page.\n\n"
        "| p50 ms | p95 ms | p99 ms | mean ms | embed p50 / p95 ms | median hits |\n"
        "|---:|---:|---:|---:|---:|---:|\n"
        f"| {res['p50_ms']} | {res['p95_ms']} | {res['p99_ms']} | {res['mean_ms']} | "
        f"{res['embed_p50_ms']} / {res['embed_p95_ms']} | {res['median_total_hits']:,} |\n\n"
        f"Index build {res['build_s']} s (item embeddings from the cache when warm); reranker trained on "
        f"{res['reranker_queries']:,} logged queries in {res['reranker_train_s']} s.\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if "\n## Search\n" not in text:
        text = text.rstrip("\n") + "\n\n## Search\n"
        RESULTS.write_text(text + block)
        return
    # Insert at the end of the Search section (before the next "## " heading), leaving other sections alone.
    start = text.index("\n## Search\n") + len("\n## Search\n")
    nxt = text.find("\n## ", start)
    end = len(text) if nxt < 0 else nxt
    RESULTS.write_text(text[:end].rstrip("\n") + "\n" + block + text[end:])


if __name__ == "__main__":
    main()
