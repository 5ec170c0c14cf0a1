"""Dense search alone on Home Depot, the packaged MiniLM against one fine-tuned on the other folds' judgments.

    nice -n 10 .venv/bin/python benchmarks/search_adapt.py \
        ../shared/data/homedepot-search-relevance/train_dev.csv.gz --out /tmp/adapt-hd

Protocol: queries are split by `aisle.search.evaluate.fold_of(query, 5)` (a hash of the normalised text); fold 0
(20%) is held out of every fit. The encoder is fine-tuned (`aisle.search.adapt`) on the judgments of folds 1-4,
hard negatives mined from Aisle's field BM25 over the whole catalog. Then each encoder alone ranks the WHOLE
catalog (exact inner product over every product's vector) for each fold-0 query: graded NDCG@10 and Recall@100
exactly as `aisle search-eval` defines them. Prints one table and writes `--out/result.json`.

`--judge dev` is for choosing the fine-tune's settings without looking at fold 0: the fitted folds are split again
the way `benchmarks/search_dev.py` splits them, the encoder is fine-tuned on folds 2-4 and judged on fold 1
(fold 0 is then in neither). Only the schedule that wins there is run again with the default `--judge heldout`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from aisle.data.readers import read_dataspec
from aisle.search import evaluate as ev
from aisle.search.adapt import AdaptSettings, engine_lexical, finetune_encoder, training_pairs
from aisle.search.dense import DenseIndex
from aisle.search.embed import Embedder, default_cache_dir
from aisle.search.engine import SearchEngine
from machine import describe

CHUNK = 2048


def dense_alone(embedder: Embedder, engine: SearchEngine, texts: list[str], judged: list[ev.JudgedQuery],
                label: str) -> dict[str, float | int]:
    """The encoder alone over the whole catalog: exact top-100 per query (no lexical side, no reranker)."""
    t0 = time.perf_counter()
    # in chunks through the disk cache: a run stopped half way resumes where it was
    chunks = [embedder.embed_texts(texts[i:i + CHUNK]) for i in tqdm(range(0, len(texts), CHUNK),
                                                                       desc=f"{label}: embedding the catalog")]
    vectors = np.vstack(chunks)
    index = DenseIndex(vectors, hnsw_threshold=len(texts) + 1)  # exact: the encoder's quality, not the graph's
    queries = [engine.embedding_query(engine.understand(j.query)[0]) for j in judged]
    qvecs = embedder.embed_texts(queries)
    rows, _ = index.search_batch(qvecs, 100)
    rankings = [r[r >= 0] for r in tqdm(rows, desc=f"{label}: ranking", leave=False)]
    return {**ev.metrics(rankings, judged), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path, help="Home Depot train_dev.csv.gz")
    ap.add_argument("--out", type=Path, required=True, help="folder for the fine-tuned encoder and result.json")
    ap.add_argument("--judge", choices=("heldout", "dev"), default="heldout",
                    help="heldout: fit folds 1-4, judge fold 0; dev: fit folds 2-4, judge fold 1 (fold 0 unused)")
    ap.add_argument("--train-folds", default=None,
                    help="fine-tune on these fitted folds only (comma-separated, of 1-4; default: every fitted fold "
                         "but the judged one), e.g. 3,4 for an encoder kept apart from the reranker's queries")
    ap.add_argument("--max-pairs", type=int, default=1500, help="seeded sample of the positives (0: all of them)")
    ap.add_argument("--positive-at", type=float, default=AdaptSettings.positive_at,
                    help="relevance (1-3) from which a judged pair is a positive")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-seq-length", type=int, default=32)
    ap.add_argument("--hard-negatives", type=int, default=AdaptSettings.hard_negatives)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder", type=Path, default=None,
                    help="score this already fine-tuned encoder (e.g. a previous run's --out/encoder) instead of "
                         "fine-tuning one; the pairs are still mined and counted")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine two threads spin against other jobs)")
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache (default $AISLE_CACHE/embeddings)")
    args = ap.parse_args()
    if not args.path.exists():
        sys.exit(f"{args.path}: not found (the Home Depot file is research-only data, see shared/data/README)")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = read_dataspec(f"homedepot:{args.path}")
    judgments: pl.DataFrame = data.extras["judgments"].filter(pl.col("relevance").is_not_null())
    engine = SearchEngine.build(data.items, dense=False)
    texts = [engine.catalog.embedding_text(i) for i in range(len(engine.catalog))]
    fold = judgments["query"].map_elements(lambda q: ev.fold_of(q, 5), return_dtype=pl.Int64)
    judge_fold = 0 if args.judge == "heldout" else 1
    folds = [f for f in range(1, 5) if f != judge_fold]
    if args.train_folds:
        folds = sorted({int(f) for f in args.train_folds.split(",")})
        if not set(folds) <= set(range(1, 5)) - {judge_fold}:
            ap.error(f"--train-folds: fitted folds 1-4 other than the judged fold {judge_fold}, got {args.train_folds}")
    train, test = judgments.filter(fold.is_in(folds)), judgments.filter(fold == judge_fold)
    judged = ev.judged_queries(test, engine)
    print(f"{len(engine.catalog):,} products; {train['query'].n_unique():,} training queries, "
          f"{len(judged):,} judged (fold {judge_fold}) queries; read + indexed in {time.perf_counter() - t0:.0f}s",
          flush=True)

    settings = AdaptSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             max_pairs=args.max_pairs or None, hard_negatives=args.hard_negatives, seed=args.seed,
                             max_seq_length=args.max_seq_length, positive_at=args.positive_at)
    t1 = time.perf_counter()
    pairs = training_pairs(train, dict(zip(engine.catalog.item_ids, texts, strict=True)), engine_lexical(engine),
                           settings)
    mine_s = time.perf_counter() - t1
    print(f"{len(pairs):,} training pairs (hard negatives mined in {mine_s:.0f}s)", flush=True)
    t1, c1 = time.perf_counter(), time.process_time()
    finetune_cpu_s: float | None = None
    if args.encoder is None:
        encoder = finetune_encoder(pairs, args.out / "encoder", settings)
        finetune_s: float | None = time.perf_counter() - t1
        finetune_cpu_s = time.process_time() - c1  # on a shared machine the CPU seconds are what compares
        print(f"fine-tuned in {finetune_s:.0f}s ({finetune_cpu_s:.0f} CPU s)", flush=True)
    else:
        encoder, finetune_s = args.encoder, None

    cache = args.cache or default_cache_dir()
    systems = {}
    for label, path in (("fine-tuned", encoder), ("packaged", None)):
        systems[label] = dense_alone(Embedder(cache, model_path=path), engine, texts, judged, label)
        print(f"{label}: {systems[label]}", flush=True)
    result = {"machine": describe(), "pairs": len(pairs), "mine_seconds": round(mine_s, 1),
              "finetune_seconds": None if finetune_s is None else round(finetune_s, 1),
              "finetune_cpu_seconds": None if finetune_cpu_s is None else round(finetune_cpu_s, 1),
              "train_folds": folds,
              "settings": vars(args) | {"path": str(args.path), "out": str(args.out), "encoder": str(encoder)},
              "judged_fold": judge_fold, "judged_queries": len(judged), "products": len(engine.catalog),
              "systems": systems,
              "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time(), 1)}
    result["settings"]["cache"] = str(cache)
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"\nDense alone on {len(judged):,} Home Depot queries of fold {judge_fold} (in no fit), whole catalog of "
          f"{len(engine.catalog):,}; {describe()}")
    print("| encoder | NDCG@10 | Recall@100 | embed + rank s |")
    print("|---|---:|---:|---:|")
    for label, m in systems.items():
        print(f"| {label} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | {m['seconds']:.0f} |")
    tuned = f"fine-tune {finetune_s:.0f} s" if finetune_s is not None else f"encoder {encoder} (not fine-tuned here)"
    print(f"pairs {len(pairs):,}, {tuned}, total {result['seconds']:.0f} s ({result['cpu_seconds']:.0f} CPU s)")


if __name__ == "__main__":
    main()
