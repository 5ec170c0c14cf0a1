"""Which optional combiner feature groups earn their place, scored on the VALIDATION targets only (leave-one-out,
history excluded): no test target is read, so the default it informs (`PipelineConfig.features`) cannot overfit
the test set.

    nice -n 5 .venv/bin/python benchmarks/pipeline_features.py s3rec:../shared/data/amazon-s3rec/Beauty.txt \
        --config benchmarks/pipeline_fast.toml --variants none,tags --json features.json

One pipeline fit on the training events with every group of every variant (sources fitted on the training events
without each user's last one, the combiner's training frame taken from them, sources refitted on all training
events: exactly `Pipeline.fit`); then per variant a combiner trained on that frame's base columns plus the
variant's groups (same LightGBM settings, same choice against the best single source), and the validation
targets ranked among the merged candidates by it. A target that is not a candidate is a miss, as it is in the
harness, where the pipeline ranks every candidate above every other item. A variant is a `+`-joined list of
groups (`none`: the base columns only), optionally followed by combiner settings, each `@KEY=VALUE`: the
`[pipeline]` keys `rounds`, `early_stop`, `max_train_queries` (`all`: every training query) and the LightGBM keys
of `aisle.pipeline.combiner.TUNABLE` (the `lightgbm` table). So the combiner's settings are compared on one
frame, fitted once:

    chrt --idle 0 nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pipeline_features.py \
        s3rec:../shared/data/amazon-s3rec/Beauty.txt --config benchmarks/pipeline_full.toml \
        --variants 'tags+full,tags+full@max_train_queries=all@early_stop=50@rounds=1000'

The frame holds the largest `max_train_queries` of any variant; a variant with fewer takes that share of its
queries at random (the pipeline draws its users at random too, before it drops those whose target is not a
candidate).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.cli.train import load_config, pipeline_config
from aisle.data.readers import read_dataspec
from aisle.data.splits import leave_one_out
from aisle.evaluate.protocol import build_queries, item_vocab
from aisle.models.base import TrainData
from aisle.pipeline import Combiner, FeatureFrame, Pipeline, PipelineConfig
from aisle.pipeline.combiner import TUNABLE
from aisle.pipeline.core import hold_out_last

SETTINGS = ("rounds", "early_stop", "max_train_queries")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataspec")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--variants", default="none,tags")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    console = Console(stderr=True)
    base = pipeline_config(load_config(args.config), sources=DEMO_SOURCES_FAST)
    variants = {v: _variant(v, base) for v in args.variants.split(",")}
    every = tuple(dict.fromkeys(g for groups, _ in variants.values() for g in groups))
    data = read_dataspec(args.dataspec)
    split = leave_one_out(data.events)
    catalog = data.items if data.items.height else None
    train = TrainData.from_events(split.history("valid"), items=item_vocab(data.events, catalog), catalog=catalog)
    n_users = len(hold_out_last(train)[1])
    most = max(min(c.max_train_queries, n_users) for _, c in variants.values())
    config = base.updated({"features": every, "max_train_queries": most})
    captured: dict[str, Any] = {}
    t0 = time.perf_counter()
    with console.status("fitting the pipeline on the training events ..."):
        pipe = Pipeline(config, seed=args.seed).fit(
            train, on_training_frame=lambda f, y, g: captured.update(frame=f, labels=y, sizes=g))
    fit_s = time.perf_counter() - t0
    frame: FeatureFrame = captured["frame"]
    combiners: dict[str, tuple[list[str], Combiner]] = {}
    combiner_s: dict[str, float] = {}
    n_train: dict[str, int] = {}
    for name, (groups, settings) in variants.items():
        columns = pipe.feature_names(groups)
        with console.status(f"{name}: training its combiner ..."):
            t1 = time.process_time()
            values, labels, sizes = _share_of_queries(frame.columns(columns), captured["labels"], captured["sizes"],
                                                      min(settings.max_train_queries, n_users) / most, config.seed)
            rng = np.random.default_rng(config.seed)
            combiner = Combiner.of_config(pipe.source_keys, settings)
            combiners[name] = (columns, combiner.fit(FeatureFrame(tuple(columns), values), labels, sizes,
                                                     holdout_fraction=config.holdout_fraction, rng=rng))
            combiner_s[name] = time.process_time() - t1
            n_train[name] = len(sizes)
    queries = build_queries(train, split.history("valid"), split.valid)
    ranks: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    step = 1024
    with console.status("ranking the validation targets ...") as status:
        for a in range(0, len(queries), step):
            b = min(a + step, len(queries))
            cands = pipe.candidates(queries.batch(a, b))
            target = queries.targets(a, b)[0][:, 0]
            for name, (columns, combiner) in combiners.items():
                scores = combiner.score(FeatureFrame(tuple(columns), cands.features.columns(columns)))
                ranks[name].append(target_ranks(cands.query, cands.item, scores, target))
            status.update(f"ranking the validation targets ... {b:,}/{len(queries):,}")
    rows = []
    for name, (_, combiner) in combiners.items():
        rank = np.concatenate(ranks[name])
        rows.append({"variant": name, "ranker": combiner.ranker, "rounds": str(combiner.best_rounds),
                     "queries": str(n_train[name]), "combiner CPU s": f"{combiner_s[name]:.0f}",
                     **{f"{m}@{k}": float(np.mean(np.where(rank < k, 1.0 if m == "HR" else
                                                           1.0 / np.log2(np.minimum(rank, 1e9) + 2.0), 0.0)))
                        for k in (10, 20) for m in ("HR", "NDCG")}})
    table = Table(title=f"{args.dataspec}: combiner feature groups on the validation targets "
                        f"({len(queries):,} users), seed {args.seed}; pipeline fit {fit_s:.0f}s",
                  title_justify="left")
    for col in rows[0]:
        table.add_column(col, justify="left" if col in ("variant", "ranker") else "right")
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"dataspec": args.dataspec, "seed": args.seed, "fit_seconds": fit_s,
                                         "users": len(queries), "rows": rows}, indent=2))


def _variant(spec: str, base: PipelineConfig) -> tuple[tuple[str, ...], PipelineConfig]:
    """`GROUPS[@KEY=VALUE...]` -> (the feature groups, the configuration with those combiner settings)."""
    groups, *settings = spec.split("@")
    over: dict[str, Any] = {}
    lightgbm = dict(base.lightgbm)
    for setting in settings:
        key, _, value = setting.partition("=")
        if key == "max_train_queries" and value == "all":
            over[key] = 1 << 30
        elif key in SETTINGS:
            over[key] = int(value)
        elif key in TUNABLE:
            lightgbm[key] = float(value) if "." in value or "e" in value else int(value)
        else:
            raise SystemExit(f"variant {spec!r}: unknown setting {key!r}; accepted: {', '.join(SETTINGS + TUNABLE)}")
    return (() if groups == "none" else tuple(groups.split("+"))), base.updated({**over, "lightgbm": lightgbm})


def _share_of_queries(values: np.ndarray, labels: np.ndarray, sizes: np.ndarray, share: float, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random `share` of the frame's queries (all of them at share 1), rows kept in order."""
    if share >= 1.0:
        return values, labels, sizes
    pick = np.random.default_rng(seed + 1).random(len(sizes)) < share
    rows = np.repeat(pick, sizes)
    return values[rows], labels[rows], sizes[pick]


def target_ranks(query: np.ndarray, item: np.ndarray, scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per query, its target's 0-based rank among its candidates (ties: lower item index first, as the harness
    breaks them); inf when the target is not a candidate (the pipeline ranks every candidate above the rest)."""
    is_target = item == target[query]
    out = np.full(len(target), np.inf)
    hit_query, hit_score, hit_item = query[is_target], scores[is_target], item[is_target]
    best = np.full(len(target), np.nan)
    best[hit_query] = hit_score
    at = np.full(len(target), -1)
    at[hit_query] = hit_item
    above = (scores > best[query]) | ((scores == best[query]) & (item < at[query]))
    counted = np.bincount(query, weights=above, minlength=len(target))
    out[hit_query] = counted[hit_query]
    return out


if __name__ == "__main__":
    main()
