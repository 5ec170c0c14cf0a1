"""Leave-one-source-out: what each source of a pipeline adds, on the TEST targets, paired per user against the whole.

    chrt --idle 0 nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pipeline_loso.py \
        s3rec:../shared/data/amazon-s3rec/Beauty.txt --config benchmarks/pipeline_hops.toml --json loso.json \
        --per-user loso.parquet

The harness of `aisle evaluate --models pipeline` (leave-one-out, full ranking, history excluded; sources fitted
on the training events, the combiner on each user's validation target, scored once on the test targets), with
the pipeline fitted ONCE instead of once per variant: a source's candidates and columns do not depend on the
other sources, so "the pipeline without source S" is the whole pipeline's frame without S's columns, without the
candidates only S proposed, with `n_sources` counting the others, and (S = the trending source) the `trending`
column as the pipeline computes it without one (plain counts over their largest); its combiner is trained on that
frame by the same code and choice (`Combiner.fit`, same seed and held-out draw). Seven `aisle evaluate` runs
cost seven source fits; this costs one. The whole pipeline's row is the fitted pipeline's own combiner, i.e. the
`aisle evaluate` row; its retrained twin is checked to rank exactly as it does, which checks the replication.
A source whose key appears in the "full" feature group is refused (its full columns rank among the pool).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from rich.console import Console
from rich.progress import Progress

from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.cli.train import load_config, pipeline_config
from aisle.data.readers import read_dataspec
from aisle.data.splits import leave_one_out
from aisle.evaluate.protocol import build_queries, item_vocab
from aisle.evaluate.report import paired_tests
from aisle.models.base import TrainData
from aisle.pipeline import Combiner, FeatureFrame, Pipeline
from aisle.pipeline.core import TrainingFrame, hold_out_tail
from pipeline_features import target_ranks

WHOLE = "whole"
METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")


def without(frame: FeatureFrame, key: str | None, max_count: float) -> tuple[FeatureFrame, np.ndarray]:
    """`frame` as the pipeline without source `key` would have built it, and the mask of the rows it keeps
    (`key` None: the whole frame). `max_count`: the largest positive-event count of the facts the frame was built
    with, to turn the popularity column back into the plain-count trend when `key` is the trending source."""
    if key is None:
        return frame, np.ones(len(frame.values), bool)
    mine = [f"{key}_{part}" for part in ("score", "rr", "last")]
    names = [n for n in frame.names if n not in mine]
    values = frame.columns(names).copy()
    n_at = names.index("n_sources")
    values[:, n_at] -= (frame.column(f"{key}_rr") > 0).astype(np.float32)
    if key == "trending":  # Pipeline._item_facts without a trending source: counts / their max
        pop = frame.column("popularity").astype(np.float64)
        values[:, names.index("trending")] = (np.expm1(pop * np.log1p(max_count)) / max(max_count, 1e-12))
    keep = values[:, n_at] > 0
    return FeatureFrame(tuple(names), values[keep]), keep


def train_variant(training: TrainingFrame, keys: list[str], key: str | None, max_count: float, pipe: Pipeline,
                  n_queries: int) -> Combiner:
    """The combiner the pipeline without `key` learns: same rows (less the ones only `key` found; a query whose
    target only `key` found teaches nothing and is left out, as `Pipeline.training_frame` does), same seed and
    held-out draw as `Pipeline._fit_combiner`."""
    frame, labels, sizes = training.frame, training.labels, training.sizes
    sub, keep = without(frame, key, max_count)
    group = np.repeat(np.arange(len(sizes)), sizes)[keep]
    y = labels[keep]
    found = np.bincount(group, weights=y, minlength=len(sizes)) > 0
    rows = found[group]
    cfg = pipe.config
    rng = np.random.default_rng(cfg.seed)
    if n_queries > cfg.max_train_queries:  # the draw `training_frame` made, so the held-out fifth is the same
        rng.choice(n_queries, cfg.max_train_queries, replace=False)
    combiner = Combiner([k for k in keys if k != key], rounds=cfg.rounds, seed=cfg.seed)
    new_sizes = np.bincount(group[rows], minlength=len(sizes))[found]
    return combiner.fit(sub.rows(rows), y[rows], new_sizes, holdout_fraction=cfg.holdout_fraction, rng=rng,
                        owners=training.users[found])


def metrics_of(rank: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for k in (10, 20):
        out[f"HR@{k}"] = (rank < k).astype(np.float64)
        out[f"NDCG@{k}"] = np.where(rank < k, 1.0 / np.log2(np.minimum(rank, 1e9) + 2.0), 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataspec")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--per-user", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    console = Console(stderr=True)
    config = pipeline_config(load_config(args.config), sources=DEMO_SOURCES_FAST).updated({"seed": args.seed})
    data = read_dataspec(args.dataspec)
    split = leave_one_out(data.events)
    catalog = data.items if data.items.height else None
    train = TrainData.from_events(split.history("test"), items=item_vocab(data.events, catalog), catalog=catalog)
    pipe = Pipeline(config, seed=args.seed)
    keys = list(pipe.source_keys)
    full_keys = set(pipe.scorer_keys) if "full" in config.features else set()
    if full_keys:
        raise SystemExit(f"{args.config}: the full feature group ranks among the pool; leave it out of the config")
    captured: dict[str, Any] = {}

    def capture(training: TrainingFrame) -> None:
        captured.update(training=training, max_count=float(pipe.facts.counts.max()))

    t0 = time.perf_counter()
    with console.status("fitting the pipeline (sources on the training events, combiner on the validation "
                        "targets) ..."):
        pipe.fit(train, on_training_frame=capture)
    fit_s = time.perf_counter() - t0
    n_queries = len(hold_out_tail(train, config.train_positions).users)
    variants: dict[str, str | None] = {WHOLE: None, **{f"-{k}": k for k in keys}}
    combiners: dict[str, Combiner] = {}
    with console.status("training the combiner of each variant ..."):
        for name, key in variants.items():
            combiners[name] = train_variant(captured["training"], keys, key, captured["max_count"], pipe, n_queries)
    test_max = float(pipe.facts.counts.max())
    queries = build_queries(train, split.history("test"), split.test)
    ranks: dict[str, list[np.ndarray]] = {name: [] for name in [*variants, "served"]}
    pool: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    step = 1024
    with Progress(console=console) as bar:
        task = bar.add_task("ranking the test targets", total=len(queries))
        for a in range(0, len(queries), step):
            b = min(a + step, len(queries))
            cands = pipe.candidates(queries.batch(a, b))
            target = queries.targets(a, b)[0][:, 0]
            ranks["served"].append(target_ranks(cands.query, cands.item, pipe.rank(cands), target))
            for name, key in variants.items():
                sub, keep = without(cands.features, key, test_max)
                query, item = cands.query[keep], cands.item[keep]
                ranks[name].append(target_ranks(query, item, combiners[name].score(sub), target))
                pool[name].append(np.bincount(query, minlength=b - a))
            bar.update(task, completed=b)
    served, whole = np.concatenate(ranks.pop("served")), np.concatenate(ranks[WHOLE])
    if not np.array_equal(served, whole):
        console.print(f"[red]the retrained whole combiner ranks {int((served != whole).sum())} targets differently "
                      "from the fitted pipeline: the replication is off[/]")
    per_user = pl.concat([pl.DataFrame({"user_id": queries.user_ids.astype(str), "model": name,
                                        **metrics_of(np.concatenate(r))}) for name, r in ranks.items()])
    tests = paired_tests(per_user, WHOLE, ["NDCG@10", "HR@10"])
    rows = []
    for name in variants:
        m = per_user.filter(pl.col("model") == name)
        row: dict[str, Any] = {"variant": name, "ranker": combiners[name].ranker,
                               "candidates": float(np.concatenate(pool[name]).mean()),
                               **{k: float(m[k].mean()) for k in METRICS}}
        if name != WHOLE:
            # paired_tests(per_user, WHOLE) reports whole - variant: what the left-out source adds
            row |= {f"gain {k}": tests[name][k]["difference"] for k in ("NDCG@10", "HR@10")}
            row |= {f"p {k}": tests[name][k]["p_value"] for k in ("NDCG@10", "HR@10")}
        rows.append(row)
    for row in rows:
        console.print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                      soft_wrap=True, markup=False)
    console.print(f"pipeline fit {fit_s:.0f} s; {len(queries):,} test users; the retrained whole ranks as served: "
                  f"{bool(np.array_equal(served, whole))}")
    if args.json:
        args.json.write_text(json.dumps({"dataspec": args.dataspec, "config": str(args.config), "seed": args.seed,
                                         "fit_seconds": fit_s, "users": len(queries),
                                         "replicated": bool(np.array_equal(served, whole)), "rows": rows},
                                        indent=2))
    if args.per_user:
        per_user.write_parquet(args.per_user)


if __name__ == "__main__":
    main()
