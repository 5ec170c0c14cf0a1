"""Search settings judged on a development split of the FITTED queries only (issue 25: never tune on held-out).

Why: `aisle search-eval`'s held-out fold (`fold_of(query, 5) == 0`) may be looked at once, at the end; every choice
before that (rerank depth, reranker hyperparameters, a candidate feature) is judged here instead: the fitted 80% is
split again by the same hash, fold 1 (~1,660 queries) is the development fold and folds 2-4 train the reranker.
Candidates and features are computed once to the deepest depth asked for (the slow part: a few CPU-minutes for the
6,586 fitted queries over the 41k catalog) and kept in `--prep-cache`; each depth reuses the first `d` rows
(the fusion-ordered head), and each variant is one LightGBM fit.

    OMP_NUM_THREADS=1 chrt --idle 0 nice -n 19 .venv/bin/python benchmarks/search_dev.py \\
        /work/shared/data/homedepot-search-relevance/train_dev.csv.gz --encoder /tmp/adapt-hd/encoder \\
        --prep-cache /tmp/sdev/k300d400.pkl --depths 150,300,400 --variants default,leaves63,leaves15

The fusion is the one `aisle search-eval` chose on the fitted queries (RRF k 60, dense weight 1, 300 lexical + 300
dense, the first 150 lexical whatever words they match); `--prf N` adds two experimental features (each candidate's
cosine to the mean vector of the first N fused candidates, and its gap to the best), to test pseudo-relevance
feedback before it is built into `aisle.search.features`.
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

#: reranker variants: name -> (LightGBM params over `aisle.search.rerank.PARAMS`, boosting rounds or None)
VARIANTS: dict[str, tuple[dict[str, object] | None, int | None]] = {
    "default": (None, None),
    "leaves63": ({"num_leaves": 63, "min_data_in_leaf": 100, "learning_rate": 0.05}, 200),
    "leaves15": ({"num_leaves": 15, "min_data_in_leaf": 50, "learning_rate": 0.1}, 200),
    "trunc40": ({"lambdarank_truncation_level": 40}, None),
}


def prepare(path: str, encoder: Path | None, k: int, depth: int) -> tuple[list, list, np.ndarray | None]:
    """The fitted queries' judgments, candidates and features (to `depth`), and the item vectors."""
    from aisle.data.readers import read_dataspec
    from aisle.search import evaluate as ev
    from aisle.search.embed import Embedder, default_cache_dir
    from aisle.search.engine import SearchEngine

    t0 = time.perf_counter()
    data = read_dataspec(f"homedepot:{path}")
    judgments = data.extras["judgments"].drop_nulls("relevance")
    engine = SearchEngine.build(data.items, dense=True, embedder=Embedder(default_cache_dir(), model_path=encoder))
    engine.config = replace(engine.config, rrf_k=60.0, dense_weight=1.0, k_lex=k, k_dense=k, k_lex_any=150,
                            rerank_depth=depth)
    judged = ev.judged_queries(judgments, engine)
    fit_idx, _ = ev.holdout_split(judged)
    sub = [judged[i] for i in fit_idx]

    def progress(stage: str, done: int, total: int) -> None:
        print(f"  {stage} {done:,}/{total:,} ({time.perf_counter() - t0:.0f}s)", end="\r", flush=True)

    prep = ev.prepare(engine, [j.query for j in sub], list_depth=k, progress=progress)
    print()
    assert engine.dense is not None
    return sub, prep, np.asarray(engine.dense.vectors)


def prf_features(rows: np.ndarray, vectors: np.ndarray, n: int) -> np.ndarray:
    """Cosine of each row's vector to the normalised mean of the first `n` rows' vectors, and its gap to the best."""
    if not len(rows):
        return np.zeros((0, 2), np.float32)
    c = vectors[rows[:n]].mean(0)
    c /= float(np.linalg.norm(c)) or 1.0
    s = vectors[rows] @ c
    return np.column_stack([s, s - s.max()]).astype(np.float32)


def fit_and_rank(prep: list, labels: list[np.ndarray], train: np.ndarray, dev: np.ndarray,
                 params: dict[str, object] | None, rounds: int | None) -> list[np.ndarray]:
    """The development queries' rankings by a LambdaMART fitted on `train` with `aisle.search.rerank`'s settings;
    straight through LightGBM, since `Reranker` only takes the engine's own feature columns (not the PRF ones)."""
    import lightgbm as lgb

    from aisle.search import rerank

    keep = [i for i in train if len(prep[i].features)]
    data = lgb.Dataset(np.vstack([prep[i].features for i in keep]),
                       rerank.grades(np.concatenate([labels[i] for i in keep])),
                       group=[len(prep[i].features) for i in keep])
    booster = lgb.train({**rerank.PARAMS, **(params or {}), "num_threads": 1}, data,
                        num_boost_round=rounds or rerank.NUM_ROUNDS)
    out = []
    for i in dev:
        p = prep[i]
        if not len(p.features):
            out.append(p.rows)
            continue
        s = booster.predict(p.features, num_threads=1)
        out.append(np.concatenate([p.rows[:len(s)][np.argsort(-s, kind="stable")], p.rows[len(s):]]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="the Home Depot development file (train_dev.csv.gz)")
    ap.add_argument("--encoder", type=Path, default=None, help="fine-tuned encoder folder (default: packaged)")
    ap.add_argument("--k", type=int, default=300, help="lexical and dense list depth")
    ap.add_argument("--depths", default="150", help="rerank depths to compare, e.g. 150,300")
    ap.add_argument("--variants", default="default", help=f"reranker variants: {', '.join(VARIANTS)}")
    ap.add_argument("--prf", type=int, default=0, help="also test the PRF features over the first N candidates")
    ap.add_argument("--prep-cache", type=Path, default=None, help="keep / reuse the prepared candidates here")
    ap.add_argument("--drop", default="", help="feature columns left out of every fit, comma-separated (a feature "
                    "set judged against the same run without it)")
    ap.add_argument("--dev-fold", type=int, choices=(1, 2, 3, 4), default=1,
                    help="the fitted fold judged (the other three train the reranker): a second fold confirms a "
                         "gain seen on the first")
    args = ap.parse_args()
    depths = sorted(int(d) for d in args.depths.split(","))
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")

    from aisle.search import evaluate as ev
    from aisle.search.evaluate import Prepared

    if args.prep_cache is not None and args.prep_cache.exists():
        with args.prep_cache.open("rb") as f:  # our own file, written below
            sub, prep, vectors = pickle.load(f)
    else:
        sub, prep, vectors = prepare(args.path, args.encoder, args.k, depths[-1])
        if args.prep_cache is not None:
            with args.prep_cache.open("wb") as f:
                pickle.dump((sub, prep, vectors), f)
    fold = np.array([ev.fold_of(j.query, 5) for j in sub])
    dev, train = np.flatnonzero(fold == args.dev_fold), np.flatnonzero(fold != args.dev_fold)
    dev_judged = [sub[i] for i in dev]
    print(f"train {len(train):,} queries (the other fitted folds), development {len(dev):,} (fold {args.dev_fold}); "
          "held-out fold 0 unused")
    m = ev.metrics([prep[i].rows for i in dev], dev_judged, recall_at_k=(100, 150, 200, 300, 400))
    print("fused candidates:", {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()})
    from aisle.search.features import FEATURES

    drop = [c for c in args.drop.split(",") if c]
    unknown = [c for c in drop if c not in FEATURES]
    if unknown:
        ap.error(f"unknown feature(s) {', '.join(unknown)}")
    if drop:
        kept = np.array([i for i, c in enumerate(FEATURES) if c not in drop])
        prep = [Prepared(rows=p.rows, features=p.features[:, kept] if len(p.features) else p.features) for p in prep]
        print("left out:", ", ".join(drop))
    extras = [0, args.prf] if args.prf else [0]
    for d in depths:
        for prf in extras:
            pd = [Prepared(rows=p.rows, features=np.hstack([p.features[:d], prf_features(p.rows[:len(p.features[:d])],
                                                                                          vectors, prf)])
                           if prf else p.features[:d]) for p in prep]
            labels = ev.head_gains(pd, sub)
            for name in names:
                params, rounds = VARIANTS[name]
                t = time.perf_counter()
                ranked = fit_and_rank(pd, labels, train, dev, params, rounds)
                m = ev.metrics(ranked, dev_judged, recall_at_k=(100, 200))
                print(f"depth {d} {name}{f' +prf{prf}' if prf else ''}: NDCG@10 {m['ndcg@10']:.4f} "
                      f"Recall@100 {m['recall@100']:.4f} Recall@200 {m['recall@200']:.4f} "
                      f"({time.perf_counter() - t:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
