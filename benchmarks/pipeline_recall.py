"""How far the merged candidates reach, per pipeline variant, on the VALIDATION targets only.

The pipeline can only rank what its sources bring: on Amazon Beauty the merged candidates held ~30% of the test
targets within 200 (RESULTS.md, "Pipeline on the public benchmarks"). Raising that ceiling is a question about
the sources (how deep each one goes, which sources there are), and it can be answered on the validation targets
without touching the test set, so whatever it chooses cannot overfit the test rows. Each variant is the base
`--config`'s `[pipeline]` table with a JSON object of overrides on top (`neighbours`, `per_source`, `window`,
or a whole `sources` list):

    nice -n 5 .venv/bin/python benchmarks/pipeline_recall.py s3rec:../shared/data/amazon-s3rec/Beauty.txt \
        --config benchmarks/pipeline_fast.toml --variant base='{}' --variant deep100='{"neighbours": 100}'

Per variant: `Pipeline.fit` on the training events (the harness's `split.history("valid")`), then, on the
validation targets with the harness's queries (history excluded), the candidate recall of every source and of the
merged list at 50 / 100 / 200 and over the whole pool (`all`), the mean pool size, and the pipeline's own
validation HR@10 / NDCG@10 (`aisle.evaluate.protocol.evaluate`, stage "valid"). The recall at `all` does not
depend on the combiner: it is the ceiling the combiner works under.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.cli.train import load_config, pipeline_config
from aisle.data.readers import read_dataspec
from aisle.evaluate.protocol import candidate_recall, evaluate, item_vocab
from aisle.evaluate.runner import make_split
from aisle.models.base import TrainData
from aisle.pipeline import Pipeline

#: 100,000 stands for "the whole pool": no pipeline here proposes that many candidates per query
DEPTHS = (50, 100, 200, 100_000)


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    label, sep, overrides = text.partition("=")
    value = json.loads(overrides) if sep else {}
    if not label or not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--variant wants LABEL='{{json object}}', got {text!r}")
    return label, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataspec")
    ap.add_argument("--config", type=Path, help="the base [pipeline] table (default: the demo's fast sources)")
    ap.add_argument("--variant", type=_variant, action="append", default=[],
                    help="LABEL=JSON: [pipeline] overrides on top of the base (repeatable; none: the base alone)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="append one JSON line per variant to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    console = Console(stderr=True, width=200)
    base = pipeline_config(load_config(args.config), sources=DEMO_SOURCES_FAST)
    variants = args.variant or [("base", {})]
    data = read_dataspec(args.dataspec)
    split = make_split(data.events, "loo")
    catalog = data.items if data.items.height else None
    train = TrainData.from_events(split.history("valid"), items=item_vocab(data.events, catalog), catalog=catalog)
    rows = []
    for label, overrides in variants:
        config = base.updated(overrides)
        t0, c0 = time.perf_counter(), time.process_time()
        with console.status(f"{label}: fitting the pipeline on the training events ..."):
            pipe = Pipeline(config, seed=args.seed).fit(train)
        fit_s = time.perf_counter() - t0
        with console.status(f"{label}: candidate recall on the validation targets ..."):
            recall = candidate_recall(pipe, train, split, "valid", depths=DEPTHS)
        with console.status(f"{label}: ranking the validation targets ..."):
            metrics = evaluate(pipe, train, split, "valid", ks=(10,)).metrics
        assert recall is not None  # a Pipeline always reports it
        row = {"variant": label, "overrides": overrides, "fit_s": fit_s, "wall_s": time.perf_counter() - t0,
               "cpu_s": time.process_time() - c0, "loadavg": os.getloadavg()[0], "ranker": pipe.ranker,
               "pool": recall["mean_candidates"], "recall": recall["recall"],
               "valid": {k: metrics[k] for k in ("HR@10", "NDCG@10")}}
        rows.append(row)
        console.print(_table(args.dataspec, args.seed, [row]))
        if args.json:
            with args.json.open("a") as fh:
                fh.write(json.dumps({"dataspec": args.dataspec, "seed": args.seed, **row}) + "\n")
    if len(rows) > 1:
        Console(width=200).print(_table(args.dataspec, args.seed, rows))


def _table(dataspec: str, seed: int, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{dataspec}: merged candidate recall on the validation targets, seed {seed}",
                  title_justify="left")
    for col in ("variant", "pool", "merged @50/@100/@200/all", "best source @200 (key)", "valid HR@10",
                "valid NDCG@10", "fit s", "CPU s", "load"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for row in rows:
        merged = row["recall"]["merged"]
        sources = {k: v for k, v in row["recall"].items() if k != "merged"}
        best = max(sources, key=lambda k: sources[k]["@200"])
        table.add_row(row["variant"], f"{row['pool']:.0f}",
                      " / ".join(f"{merged[f'@{d}']:.4f}" for d in DEPTHS),
                      f"{sources[best]['@200']:.4f} ({best})", f"{row['valid']['HR@10']:.4f}",
                      f"{row['valid']['NDCG@10']:.4f}", f"{row['fit_s']:.0f}", f"{row['cpu_s']:.0f}",
                      f"{row['loadavg']:.1f}")
    return table


if __name__ == "__main__":
    main()
