"""Which queries each fitted part of search learns from, judged on a development fold (issue 25).

Two questions, both judged on fold 1 of the FITTED queries (`fold_of(query, 5) == 1`; the held-out fold 0 is in
nothing here), with the reranker trained on folds 2-4:

1. **The fusion's tuning objective.** `aisle search-eval` tunes the fusion (RRF k, dense weight, list depths) on
   fitted queries; this compares the settings chosen by Recall@150 of the fused list (`recall_slack 0`), by NDCG@10
   of the fused list among settings whose Recall@150 is within a slack of the best, and the untuned defaults, by
   what the whole system is judged on: the reranker's NDCG@10 on the development fold.
2. **Keeping the encoder apart from the reranker's queries.** A fine-tuned encoder has seen its training queries'
   positives, so on those queries its cosine is over-confident, and a reranker fitted on them learns to trust it
   more than it deserves on a new query. A variant names the encoder that serves the development fold and, for each
   training fold 2, 3, 4, the encoder whose engine computes that fold's candidates and features ("-": the fold is
   not used). `A=e234/e234,e234,e234` is today's practice (the encoder fine-tuned on the reranker's own queries);
   `D=e234/e34,e2,e2` is cross-fitted (each training query's features come from an encoder that never saw it).
   The fusion is tuned on the training folds' lists, each from its own engine, so it is cross-fitted too.

    OMP_NUM_THREADS=1 chrt --idle 0 nice -n 19 .venv/bin/python benchmarks/search_fit_dev.py \\
        /work/shared/data/homedepot-search-relevance/train_dev.csv.gz \\
        --encoder e234=/tmp/s4/e234/encoder --encoder e34=/tmp/s4/e34/encoder --encoder e2=/tmp/s4/e2/encoder \\
        --variant A=e234/e234,e234,e234 --variant D=e234/e34,e2,e2 --slack 0,0.01,1 --untuned --out /tmp/s4/fit.json

The encoders come from `benchmarks/search_adapt.py --judge dev --train-folds ...` (their catalog vectors are then in
the embedding cache). Prints one line per (variant, fusion) and writes every figure, the chosen fusion settings
and the CPU seconds to `--out`.
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
from aisle.search import tune
from aisle.search.embed import Embedder, default_cache_dir
from aisle.search.engine import SearchConfig, SearchEngine
from aisle.search.retrieve import Fusion
from machine import describe

DEV_FOLD = 1
TRAIN_FOLDS = (2, 3, 4)
LIST_DEPTH = 300  # the deepest list of `tune.fusion_grid`


def parse_variant(spec: str, encoders: dict[str, Path | None]) -> tuple[str, str, dict[int, str]]:
    """`NAME=SERVE/F2,F3,F4` -> (name, serving encoder, {training fold: encoder})."""
    name, _, rest = spec.partition("=")
    serve, _, fits = rest.partition("/")
    per_fold = fits.split(",")
    if not name or len(per_fold) != len(TRAIN_FOLDS):
        raise SystemExit(f"--variant {spec!r}: expected NAME=SERVE/F2,F3,F4")
    fit = {f: e for f, e in zip(TRAIN_FOLDS, per_fold, strict=True) if e != "-"}
    unknown = {serve, *fit.values()} - set(encoders)
    if unknown or not fit:
        raise SystemExit(f"--variant {spec!r}: unknown encoder(s) {sorted(unknown)} or no training fold")
    return name, serve, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path, help="Home Depot train_dev.csv.gz")
    ap.add_argument("--encoder", action="append", default=[], help="NAME=FOLDER (packaged=-: the packaged MiniLM)")
    ap.add_argument("--variant", action="append", required=True, help="NAME=SERVE/F2,F3,F4 (see above)")
    ap.add_argument("--slack", default="0", help="recall slacks of the fusion tuning to compare (0: today's rule)")
    ap.add_argument("--untuned", action="store_true", help="also the engine's default fusion, untuned")
    ap.add_argument("--setting", action="append", default=[],
                    help="also this fusion: RRF_K,DENSE_WEIGHT,K_LEX,K_DENSE,K_LEX_ANY (e.g. a tuning's choice)")
    ap.add_argument("--tune-queries", type=int, default=2000,
                    help="training queries the fusion is tuned on (a seeded sample, as `aisle search-eval`; 0: all)")
    ap.add_argument("--tune-only", action="store_true", help="print the tuned settings, fit nothing")
    ap.add_argument("--sample", type=int, default=0, help="a seeded sample of this many queries per fold (a smoke run)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    encoders: dict[str, Path | None] = {}
    for e in args.encoder:
        n, _, p = e.partition("=")
        encoders[n] = None if p == "-" else Path(p)
    variants = [parse_variant(v, encoders) for v in args.variant]
    slacks = [float(s) for s in args.slack.split(",") if s]

    t0, c0 = time.perf_counter(), time.process_time()
    data = read_dataspec(f"homedepot:{args.path}")
    judgments = data.extras["judgments"].drop_nulls("relevance")
    base = SearchEngine.build(data.items, dense=False)
    judged = ev.judged_queries(judgments, base)
    fold = np.array([ev.fold_of(j.query, 5) for j in judged])
    by_fold = {f: np.flatnonzero(fold == f) for f in (DEV_FOLD, *TRAIN_FOLDS)}
    if args.sample:
        rng = np.random.default_rng(0)
        by_fold = {f: np.sort(rng.choice(i, min(args.sample, len(i)), replace=False)) for f, i in by_fold.items()}
    print(f"{len(base.catalog):,} products; folds " + ", ".join(f"{f}: {len(i):,}" for f, i in by_fold.items())
          + " queries; held-out fold 0 unused", flush=True)

    engines: dict[str, SearchEngine] = {}

    def engine(name: str) -> SearchEngine:
        if name not in engines:
            emb = Embedder(default_cache_dir(), model_path=encoders[name])
            engines[name] = base.with_encoder(emb, progress=True)
        return engines[name]

    rng = np.random.default_rng(0)

    def tuning_lists(fit: dict[int, str]) -> tuple[list[ev.Prepared], list[ev.JudgedQuery]]:
        """Each retriever's kept lists for a seeded sample of `--tune-queries` training queries (as `aisle
        search-eval` tunes on a sample), each query's lists from its own fold's engine."""
        pool = [(f, i) for f in fit for i in by_fold[f]]
        if 0 < args.tune_queries < len(pool):
            pool = [pool[j] for j in np.sort(rng.choice(len(pool), args.tune_queries, replace=False))]
        out: list[ev.Prepared] = []
        for f, enc in fit.items():
            out += ev.prepare(engine(enc), [judged[i].query for g, i in pool if g == f], features=False,
                              list_depth=LIST_DEPTH)
        return out, [judged[i] for f in fit for g, i in pool if g == f]

    feats: dict[tuple[str, int, tune.FusionSetting], list[ev.Prepared]] = {}

    def prepared(enc: str, f: int, s: tune.FusionSetting) -> list[ev.Prepared]:
        if (enc, f, s) not in feats:
            e = engine(enc)
            e.config = replace(SearchConfig(), rrf_k=s.fusion.rrf_k, dense_weight=s.fusion.dense_weight,
                               k_lex=s.k_lex, k_dense=s.k_dense, k_lex_any=s.k_lex_any)
            feats[(enc, f, s)] = ev.prepare(e, [judged[i].query for i in by_fold[f]])
        return feats[(enc, f, s)]

    d = SearchConfig()
    default = tune.FusionSetting(Fusion(d.rrf_k, d.dense_weight), d.k_lex, d.k_dense, d.k_lex_any)
    dev_judged = [judged[i] for i in by_fold[DEV_FOLD]]
    rows: list[dict] = []
    tunings: dict[str, dict] = {}

    def save() -> None:
        args.out.write_text(json.dumps({"machine": describe(), "rows": rows, "tunings": tunings, "encoders": {
            k: str(v) for k, v in encoders.items()}, "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1)}, indent=2))

    for name, serve, fit in variants:
        c1 = time.process_time()
        train_judged = [judged[i] for f in fit for i in by_fold[f]]
        settings: dict[str, tune.FusionSetting] = {}
        if slacks:
            kept, kept_judged = tuning_lists(fit)
            _, trials = tune.tune_fusion(kept, kept_judged, range(len(kept)), depth=d.rerank_depth,
                                         dense_min_similarity=d.dense_min_similarity)
            grid = tune.fusion_grid()
            settings = {f"slack {s:g}": grid[tune.choose_fusion(trials, depth=d.rerank_depth, recall_slack=s)]
                        for s in slacks}
            tunings[name] = {"queries": len(kept), "trials": trials}
            del kept
        if args.untuned:
            settings["untuned"] = default
        for g in args.setting:
            k, w, kl, kd, ka = g.split(",")
            settings[f"given {g}"] = tune.FusionSetting(Fusion(float(k), float(w)), int(kl), int(kd), int(ka))
        tune_cpu = time.process_time() - c1
        print(f"{name}: fusion chosen in {tune_cpu:.0f} CPU s: "
              + "; ".join(f"{k} -> {v}" for k, v in settings.items()), flush=True)
        tunings.setdefault(name, {})["chosen"] = {k: str(v) for k, v in settings.items()}
        save()
        if args.tune_only:
            continue
        for how, s in settings.items():
            c1 = time.process_time()
            train = [p for f, enc in fit.items() for p in prepared(enc, f, s)]
            dev = prepared(serve, DEV_FOLD, s)
            prep_cpu = time.process_time() - c1
            c1 = time.process_time()
            model = ev.fit(train, ev.head_gains(train, train_judged), list(range(len(train))))
            fit_cpu = time.process_time() - c1
            ranked = [ev.apply(model, p) for p in dev]
            fused = ev.metrics([p.rows for p in dev], dev_judged, recall_at_k=(100, 150, 200))
            final = ev.metrics(ranked, dev_judged, recall_at_k=(100, 200))
            row = {"variant": name, "serve": serve, "fit": {str(f): e for f, e in fit.items()}, "fusion": how,
                   "setting": {"rrf_k": s.fusion.rrf_k, "dense_weight": s.fusion.dense_weight, "k_lex": s.k_lex,
                               "k_dense": s.k_dense, "k_lex_any": s.k_lex_any},
                   "train_queries": len(train), "fused": fused, "aisle": final,
                   "cpu_seconds": {"features": round(prep_cpu, 1), "fit": round(fit_cpu, 1)}}
            rows.append(row)
            print(f"{name} [{how}] fused NDCG@10 {fused['ndcg@10']:.4f} R@150 {fused['recall@150']:.4f} | "
                  f"aisle NDCG@10 {final['ndcg@10']:.4f} R@100 {final['recall@100']:.4f} "
                  f"R@200 {final['recall@200']:.4f} (features {prep_cpu:.0f} + fit {fit_cpu:.0f} CPU s)", flush=True)
            # free the feature sets no later row of this variant needs
            for key in [k for k in feats if k[2] == s]:
                del feats[key]
        save()
    print(f"total {time.perf_counter() - t0:.0f} s, {time.process_time() - c0:.0f} CPU s; {describe()}")


if __name__ == "__main__":
    main()
