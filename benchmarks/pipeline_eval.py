"""Offline quality of the serving pipeline next to each of its candidate-source models, on the synthetic store.

    .venv/bin/python benchmarks/pipeline_eval.py --items 5000 --users 2000 --events 200000 --out pipeline.json

The real evaluation harness (`aisle.evaluate.runner.run_experiment`): leave-one-out, every item ranked, the
user's history excluded, ties by item index. Each model is fitted on the training events plus the validation
targets and scored once on the test targets; the pipeline's combiner learns inside that fit from each user's
last event (= the validation target) with its sources fitted on the rest, so no test target reaches it.
`--sources` takes the demo's source list (`demo`, with SASRec) or `fast` (no deep model). The demo trains SASRec
for a 25-second budget, so how far it gets depends on how busy the machine is; `--deep-epochs N` trains it for
exactly N epochs instead, which makes two runs (two versions of the code, say) comparable on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from rich.console import Console

from aisle.cli.data import DEMO_SOURCES, DEMO_SOURCES_FAST
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.evaluate.report import comparison_table
from aisle.pipeline import PipelineConfig, compare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--sources", choices=("demo", "fast"), default="demo")
    ap.add_argument("--deep-epochs", type=int, help="train the deep source for exactly this many epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    s = generate(SyntheticConfig(n_items=args.items, n_users=args.users, n_events=args.events, seed=args.seed))
    data = Dataset(name="synthetic", items=s.items, users=s.users, events=s.events)
    sources = DEMO_SOURCES if args.sources == "demo" else DEMO_SOURCES_FAST
    if args.deep_epochs:
        sources = [{**s, "params": {**{k: v for k, v in s["params"].items() if k != "max_seconds"},
                                    "epochs": args.deep_epochs}} if s["model"] == "sasrec" else s for s in sources]
    cfg = PipelineConfig.from_json({**PipelineConfig().to_json(), "sources": sources})
    exp = compare(data, cfg, seed=args.seed, console=Console(stderr=True),
                  name=f"synthetic {args.items}/{args.users}/{args.events} seed {args.seed}")
    report = exp.to_dict()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["load_average"] = os.getloadavg()
    Console().print(comparison_table(report))
    singles = {k: v["NDCG@10"] for k, v in report["models"].items() if k != "pipeline"}
    best = max(singles, key=singles.get)
    print(f"pipeline NDCG@10 {report['models']['pipeline']['NDCG@10']:.4f}; best single model {best} "
          f"{singles[best]:.4f}; {report['seconds']:.0f}s, load average {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
