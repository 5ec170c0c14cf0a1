"""Which optional combiner feature groups earn their place: the pipeline fitted once per variant on the training
events and scored on the VALIDATION targets (leave-one-out, full ranking, history excluded); no test target is
read, so the choice it informs (`PipelineConfig.features`'s default) cannot overfit the test set.

    nice -n 5 .venv/bin/python benchmarks/pipeline_features.py s3rec:../shared/data/amazon-s3rec/Beauty.txt \\
        --config benchmarks/pipeline_fast.toml --variants none,score_norm,tags,session --json features.json

Each variant is a comma-free `+`-joined list of groups (`score_norm+tags`; `none`: the base columns only), on top
of the sources and settings of the `[pipeline]` table of --config (the demo's fast sources without one).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.cli.train import load_config, pipeline_config
from aisle.data.readers import read_dataspec
from aisle.data.splits import leave_one_out
from aisle.evaluate.protocol import evaluate, item_vocab
from aisle.models.base import TrainData
from aisle.pipeline import Pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataspec")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--variants", default="none,score_norm,tags,session")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    console = Console(stderr=True)
    base = pipeline_config(load_config(args.config), sources=DEMO_SOURCES_FAST)
    data = read_dataspec(args.dataspec)
    split = leave_one_out(data.events)
    catalog = data.items if data.items.height else None
    train = TrainData.from_events(split.history("valid"), items=item_vocab(data.events, catalog), catalog=catalog)
    rows = []
    for variant in args.variants.split(","):
        groups = () if variant == "none" else tuple(variant.split("+"))
        config = base.updated({"features": groups})
        t0 = time.perf_counter()
        with console.status(f"{variant}: fitting on the training events ..."):
            model = Pipeline(config, seed=args.seed).fit(train)
            fit_s = time.perf_counter() - t0
            result = evaluate(model, train, split, "valid", ks=(10, 20), seed=args.seed)
        rows.append({"variant": variant, "ranker": model.ranker, **{m: result.metrics[m] for m in
                     ("HR@10", "NDCG@10", "HR@20", "NDCG@20")}, "fit_seconds": round(fit_s, 1)})
        console.print(rows[-1])
    table = Table(title=f"{args.dataspec}: combiner feature groups, validation targets, seed {args.seed}",
                  title_justify="left")
    for col in rows[0]:
        table.add_column(col, justify="left" if col in ("variant", "ranker") else "right")
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) and k != "fit_seconds" else str(v)
                        for k, v in row.items()))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"dataspec": args.dataspec, "seed": args.seed, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
