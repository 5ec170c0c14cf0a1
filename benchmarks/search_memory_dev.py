"""The search memory (`aisle.search.memory`) judged on a development fold of the FITTED queries (issue 25).

Fold 1 of the fitted queries (`fold_of(query, 5) == 1`) is judged, folds 2-4 train the reranker, the held-out fold 0
is in nothing. The memory is the training folds' judgments, cross-fitted as `aisle search-eval` does it: a training
query in fold k gets the memory of the other training folds, a development query all of folds 2-4. Same engine,
fusion and candidates otherwise; two rerankers, with and without the memory. Prints bm25 / hybrid / aisle without
memory / aisle with memory (NDCG@10, Recall@100, Recall@200), per query type, and split by the development query's
closest logged query's similarity; writes it all to `--out`.

    nice -n 5 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_memory_dev.py \\
        /work/shared/data/homedepot-search-relevance/train_dev.csv.gz --out /tmp/s5/dev.json

The packaged encoder by default (no fine-tune on disk was kept apart from fold 1); the fusion is the one the
tuning chose on the fitted queries for it (session "search4": RRF k 10, dense weight 0.5, 300 + 300, first 50
lexical whatever words they match).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from aisle.data.readers import read_dataspec
from aisle.search import evaluate as ev
from aisle.search import memory
from aisle.search.embed import Embedder, default_cache_dir
from aisle.search.engine import SearchEngine
from aisle.search.querytypes import TYPES
from machine import describe
from search_dev import fit_and_rank

DEV_FOLD = 1
LEVELS = (0.6, 0.7, 0.8, 0.9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path, help="Home Depot train_dev.csv.gz")
    ap.add_argument("--encoder", type=Path, default=None, help="a fine-tuned encoder folder (default: packaged)")
    ap.add_argument("--setting", default="10,0.5,300,300,50", help="fusion: RRF_K,DENSE_WEIGHT,K_LEX,K_DENSE,K_ANY")
    ap.add_argument("--k-memory", type=int, default=None, help="memory products fused (default: SearchConfig's)")
    ap.add_argument("--neighbours", type=int, default=memory.NEIGHBOURS, help="logged queries consulted")
    ap.add_argument("--min-similarity", type=float, default=memory.MIN_SIMILARITY)
    ap.add_argument("--power", type=float, default=memory.POWER, help="similarity exponent of a neighbour's vote")
    ap.add_argument("--pool-control", action="store_true",
                    help="give both rerankers one more feature, 'judged for ANY training query' (no similarity): "
                         "the dataset artifact the memory could otherwise stand in for (see RESULTS)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    # settings of `aisle.search.memory` tried on the development fold (module constants: the served defaults)
    memory.NEIGHBOURS, memory.MIN_SIMILARITY, memory.POWER = args.neighbours, args.min_similarity, args.power
    t0, c0 = time.perf_counter(), time.process_time()
    data = read_dataspec(f"homedepot:{args.path}")
    judgments = data.extras["judgments"].drop_nulls("relevance")
    engine = SearchEngine.build(data.items, embedder=Embedder(default_cache_dir(), model_path=args.encoder),
                                progress=True)
    k, w, kl, kd, ka = args.setting.split(",")
    engine.config = replace(engine.config, rrf_k=float(k), dense_weight=float(w), k_lex=int(kl), k_dense=int(kd),
                            k_lex_any=int(ka))
    if args.k_memory is not None:
        engine.config = replace(engine.config, k_memory=args.k_memory)
    judged = [j for j in ev.judged_queries(judgments, engine) if not ev.is_held_out(j.query)]
    fold = np.array([ev.fold_of(j.query, 5) for j in judged])
    dev, train = np.flatnonzero(fold == DEV_FOLD), np.flatnonzero(fold != DEV_FOLD)
    print(f"{len(engine.catalog):,} products; train {len(train):,} queries (folds 2-4), development {len(dev):,} "
          f"(fold {DEV_FOLD}); held-out fold 0 unused ({time.perf_counter() - t0:.0f} s)", flush=True)
    queries = [j.query for j in judged]

    def progress(stage: str, done: int, total: int) -> None:
        print(f"  {stage} {done:,}/{total:,} ({time.perf_counter() - t0:.0f}s)", end="\r", flush=True)

    c1 = time.process_time()
    plain = ev.prepare(engine, queries, progress=progress)
    plain_cpu = time.process_time() - c1
    c1 = time.process_time()
    memories, fitted = ev.cross_fitted_memories(engine, judged, train)
    mem = ev.prepare(engine, queries, list_depth=200, progress=progress, memories=memories)
    mem_cpu = time.process_time() - c1
    print(f"\ncandidates + features: {plain_cpu:.0f} CPU s without memory, {mem_cpu:.0f} with "
          f"({len(fitted):,} logged queries)", flush=True)
    ranked: dict[str, list[np.ndarray]] = {}
    fit_cpu = {}
    importance: dict[str, float] = {}
    if args.pool_control:
        pool = {int(r) for i in train for r in judged[i].rows if r >= 0}
        own_fold = {f: {int(r) for i in train if fold[i] == f for r in judged[i].rows if r >= 0} for f in (2, 3, 4)}
        # a training query's flag comes from the OTHER training folds, as its memory does
        pools = {f: {int(r) for g in (2, 3, 4) if g != f for r in own_fold[g]} for f in (2, 3, 4)}

        def flagged(prep: list[ev.Prepared]) -> list[ev.Prepared]:
            out = []
            for i, p in enumerate(prep):
                judged_for = pool if fold[i] == DEV_FOLD else pools[int(fold[i])]
                rows = p.rows[:len(p.features)]
                col = np.fromiter((int(r) in judged_for for r in rows), np.float32, len(rows))[:, None]
                out.append(ev.Prepared(rows=p.rows, features=np.hstack([p.features, col]), lists=p.lists,
                                       types=p.types, memory_sim=p.memory_sim))
            return out

        plain, mem = flagged(plain), flagged(mem)
    for name, prep in (("aisle-no-memory", plain), ("aisle", mem)):
        c1 = time.process_time()
        labels = ev.head_gains(prep, judged)
        if args.pool_control:  # one more column than `Reranker` knows: LightGBM straight
            ranked[name] = fit_and_rank(prep, labels, train, dev, None, None)
        else:
            model = ev.fit(prep, labels, train)
            ranked[name] = [ev.apply(model, prep[i]) for i in dev]
            if name == "aisle":
                importance = {k: round(v, 1) for k, v in list(model.importance().items())[:12]}
        fit_cpu[name] = round(time.process_time() - c1, 1)
    dj = [judged[i] for i in dev]
    ranked = {"bm25": ev.bm25_baseline(engine.catalog.texts["title"], [j.query for j in dj], k=200),
              "hybrid": [plain[i].rows for i in dev], "memory alone": [mem[i].lists.get("memory", np.zeros(0))
                                                                    for i in dev], **ranked}

    def table(idx: list[int]) -> dict[str, dict[str, float]]:
        sub = [dj[a] for a in idx]
        return {n: {k: round(float(v), 4) for k, v in ev.metrics([r[a] for a in idx], sub,
                                                                 recall_at_k=(100, 200)).items()}
                for n, r in ranked.items()}

    everything = list(range(len(dev)))
    rows = table(everything)
    for n, m in rows.items():
        print(f"{n:16s} NDCG@10 {m['ndcg@10']:.4f} Recall@100 {m['recall@100']:.4f} Recall@200 {m['recall@200']:.4f}")
    types = {t: {"queries": len(idx), **table(idx)} for t in TYPES
             if (idx := [a for a, i in enumerate(dev) if t in mem[i].types])}
    for t, row in types.items():
        print(f"  {t:10s} ({row['queries']:4d}) " + " / ".join(f"{n} {row[n]['ndcg@10']:.4f}" for n in
                                                             ("bm25", "hybrid", "aisle-no-memory", "aisle")))
    sims = np.array([mem[i].memory_sim for i in dev])
    split = {}
    for level in LEVELS:
        near, far = [a for a in everything if sims[a] >= level], [a for a in everything if sims[a] < level]
        split[f"{level:g}"] = {"with_neighbour": len(near), "without": len(far),
                               "near": table(near) if near else {}, "far": table(far) if far else {}}
        line = f"  closest logged query >= {level:g}: {len(near):,} queries"
        for side, idx in (("near", near), ("far", far)):
            if idx:
                t = split[f"{level:g}"][side]
                line += f" | {side} {t['aisle-no-memory']['ndcg@10']:.4f} -> {t['aisle']['ndcg@10']:.4f}"
        print(line)
    out = {"machine": describe(), "setting": args.setting, "encoder": str(args.encoder or "packaged"),
           "pool_control": args.pool_control,
           "memory": {"k_memory": engine.config.k_memory, "neighbours": memory.NEIGHBOURS,
                      "min_similarity": memory.MIN_SIMILARITY, "power": memory.POWER},
           "dev_queries": len(dev), "train_queries": len(train), "rows": rows, "types": types, "split": split,
           "importance": importance, "cpu_seconds": {"plain": round(plain_cpu, 1), "memory": round(mem_cpu, 1),
                                                     "fit": fit_cpu},
           "seconds": round(time.perf_counter() - t0, 1), "total_cpu_seconds": round(time.process_time() - c0, 1)}
    args.out.write_text(json.dumps(out, indent=2))
    print(f"total {out['seconds']:.0f} s, {out['total_cpu_seconds']:.0f} CPU s; {describe()}")


if __name__ == "__main__":
    main()
