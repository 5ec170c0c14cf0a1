"""Does a reranker fitted on the queries its encoder was fine-tuned on trust the encoder too much? (issue 25)

The lead's 1,500-pair encoder (`/tmp/adapt-hd/encoder`, `benchmarks/search_adapt.py` defaults then: a seeded sample
of 1,500 positive pairs of folds 1-4) saw only ~1,200 of the 6,586 fitted queries: the fitted queries split into
those the encoder SAW and those it did not, under one and the same encoder, with no new fine-tune or catalog
embedding. On the development fold (fold 1 of the fitted queries, only its queries the encoder did not see: what a
new query is), two rerankers are compared that differ only in that:

* **seen**: fitted on the queries of folds 2-4 the encoder saw (their cosines are in-sample, over-confident);
* **unseen**: fitted on as many queries of folds 2-4 the encoder did not see, drawn to match the seen ones' number
  of positive pairs (the encoder's sample picked queries in proportion to their positives, so an unmatched draw
  would differ in more than having been seen); several seeded draws give the spread.

For scale, two more rows: every unseen query of folds 2-4, and all of folds 2-4 (what `aisle search-eval` does).
The candidates and features are `benchmarks/search_dev.py`'s prep cache (fusion RRF k 60, dense weight 1, 300 + 300,
features to depth 400; the first 150 are reranked). The held-out fold 0 is in nothing.

    OMP_NUM_THREADS=1 chrt --idle 0 nice -n 19 .venv/bin/python benchmarks/search_seen_dev.py \\
        /work/shared/data/homedepot-search-relevance/train_dev.csv.gz --prep-cache /tmp/sdev/dev-cache.pkl --draws 3
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from aisle.data.readers import read_dataspec
from aisle.search import evaluate as ev
from aisle.search.adapt import AdaptSettings, training_pairs
from aisle.search.features import FEATURES
from machine import describe

DEPTH = 150
DENSE = ("rrf", "dense", "dense_gap", "dense_rank")  # the features the encoder's cosine moves


def seen_queries(path: Path, max_pairs: int, seed: int) -> tuple[set[str], dict[str, int]]:
    """The queries of the encoder's seeded pair sample (as `search_adapt.py --judge heldout --max-pairs N` drew
    it), and every fitted query's number of positive pairs."""
    data = read_dataspec(f"homedepot:{path}")
    judgments = data.extras["judgments"].filter(pl.col("relevance").is_not_null())
    fold = judgments["query"].map_elements(lambda q: ev.fold_of(q, 5), return_dtype=pl.Int64)
    train = judgments.filter(fold != 0)
    ids = data.items["item_id"].cast(pl.Utf8).to_list()
    settings = AdaptSettings(max_pairs=max_pairs, hard_negatives=0, seed=seed)
    pairs = training_pairs(train, dict(zip(ids, ids, strict=True)), lambda q, k: [], settings)
    everything = training_pairs(train, dict(zip(ids, ids, strict=True)), lambda q, k: [],
                                AdaptSettings(max_pairs=None, hard_negatives=0))
    positives: dict[str, int] = defaultdict(int)
    for p in everything:
        positives[p.query] += 1
    return {p.query for p in pairs}, positives


def matched_draw(seen: list[int], unseen: list[int], strata: dict[int, int], rng: np.random.Generator) -> list[int]:
    """As many unseen queries as seen ones, with the same count in each stratum (number of positives, capped)."""
    pool: dict[int, list[int]] = defaultdict(list)
    for i in unseen:
        pool[strata[i]].append(i)
    out = []
    for s in sorted({strata[i] for i in seen}):
        need = sum(1 for i in seen if strata[i] == s)
        take = rng.choice(len(pool[s]), min(need, len(pool[s])), replace=False)
        out += [pool[s][j] for j in take]
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path, help="Home Depot train_dev.csv.gz")
    ap.add_argument("--prep-cache", type=Path, required=True, help="`benchmarks/search_dev.py`'s prep cache")
    ap.add_argument("--max-pairs", type=int, default=1500, help="the encoder's pair sample (its fine-tune's setting)")
    ap.add_argument("--draws", type=int, default=3, help="seeded matched draws of unseen training queries")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    seen_q, positives = seen_queries(args.path, args.max_pairs, 0)
    with args.prep_cache.open("rb") as f:  # our own file (search_dev.py)
        sub, prep = pickle.load(f)[:2]
    prep = [ev.Prepared(rows=p.rows, features=p.features[:DEPTH]) for p in prep]
    labels = ev.head_gains(prep, sub)
    fold = np.array([ev.fold_of(j.query, 5) for j in sub])
    seen = np.array([j.query in seen_q for j in sub])
    strata = {i: min(positives.get(j.query, 0), 6) for i, j in enumerate(sub)}
    dev = [int(i) for i in np.flatnonzero((fold == 1) & ~seen)]
    train_seen = [int(i) for i in np.flatnonzero((fold >= 2) & seen)]
    train_unseen = [int(i) for i in np.flatnonzero((fold >= 2) & ~seen)]
    print(f"{len(seen_q):,} queries in the encoder's sample; development: {len(dev):,} unseen fold-1 queries; "
          f"folds 2-4: {len(train_seen):,} seen, {len(train_unseen):,} unseen", flush=True)
    dev_judged = [sub[i] for i in dev]
    dense_cols = [FEATURES.index(f) for f in DENSE]
    rows = []

    def run(name: str, train: list[int]) -> None:
        c1 = time.process_time()
        model = ev.fit(prep, labels, train)
        m = ev.metrics([ev.apply(model, prep[i]) for i in dev], dev_judged, recall_at_k=(100,))
        gain = model.booster.feature_importance("gain")
        share = float(gain[dense_cols].sum() / gain.sum())
        rows.append({"reranker": name, "train_queries": len(train), "ndcg@10": m["ndcg@10"],
                     "recall@100": m["recall@100"], "dense_gain_share": share,
                     "fit_cpu_seconds": round(time.process_time() - c1, 1)})
        print(f"{name}: {len(train):,} training queries, NDCG@10 {m['ndcg@10']:.4f} Recall@100 "
              f"{m['recall@100']:.4f}, share of the trees' gain on {'/'.join(DENSE)} {share:.3f} "
              f"({time.process_time() - c1:.0f} CPU s)", flush=True)

    run("seen", train_seen)
    for d in range(args.draws):
        run(f"unseen, draw {d}", matched_draw(train_seen, train_unseen, strata, np.random.default_rng(d)))
    run("every unseen query of folds 2-4", train_unseen)
    run("every query of folds 2-4 (today's practice)", sorted(train_seen + train_unseen))
    result = {"machine": describe(), "dev_queries": len(dev), "rows": rows,
              "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))
    print(f"total {result['seconds']:.0f} s, {result['cpu_seconds']:.0f} CPU s; {describe()}")


if __name__ == "__main__":
    main()
