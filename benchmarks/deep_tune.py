"""Offline tuning of the deep recommenders: one configuration per call, scored on the VALIDATION targets only.

Why a script and not the runner's grid: a deep fit costs minutes on 2 CPU cores, so configurations are screened
one at a time under a time budget, and every trial (parameters, validation metrics, epochs, seconds, load average)
is appended to a JSONL log that RESULTS.md cites. The protocol is the runner's: leave-one-out split, the model fits
on `split.train` (validation and test targets never enter it), the query history is `split.history("valid")`,
full ranking over every item of the dataset, history items excluded. Test targets are never touched here; the
chosen configuration becomes the class default, and `aisle evaluate` then reports the test row.

    .venv/bin/python benchmarks/deep_tune.py s3rec:../shared/data/amazon-s3rec/Beauty.txt --model sasrec \
        --set dropout=0.5 --set max_seconds=300 --log /tmp/deep_trials.jsonl

`--monitor-every N` also scores the validation targets (same harness) every N epochs during the fit and logs
the curve: one long run then shows where a shorter schedule would stand. It only observes; nothing in the fit
reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from aisle.data.readers import read_dataspec
from aisle.evaluate.protocol import evaluate, item_vocab
from aisle.evaluate.runner import make_split
from aisle.models.base import TrainData
from aisle.models.registry import MODELS


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataspec")
    ap.add_argument("--model", default="sasrec", choices=sorted(MODELS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="constructor override (JSON)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", type=Path, default=Path("benchmarks/deep_trials.jsonl"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--monitor-every", type=int, default=0, metavar="N",
                    help="score the validation targets every N epochs during the fit (0: only at the end)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    data = read_dataspec(args.dataspec)
    split = make_split(data.events, "loo")
    catalog = data.items if data.items.height else None
    vocab = item_vocab(data.events, catalog)
    train = TrainData.from_events(split.history("valid"), items=vocab, catalog=catalog)
    torch.manual_seed(args.seed)
    model = MODELS[args.model](seed=args.seed, **params)
    monitor_s = 0.0

    def monitor(epoch: int) -> dict[str, float]:
        nonlocal monitor_s
        t = time.perf_counter()
        metrics = evaluate(model, train, split, "valid", ks=(10,)).metrics
        monitor_s += time.perf_counter() - t
        return {f"valid_{k}": round(metrics[k], 5) for k in ("HR@10", "NDCG@10")}

    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    if args.monitor_every:
        model.train_cfg = model.train_cfg.replace(eval_every=args.monitor_every)
        model.fit(train, monitor=monitor)
    else:
        model.fit(train)
    fit_s = time.perf_counter() - t0 - monitor_s
    res = evaluate(model, train, split, "valid", ks=(10, 20))
    result = getattr(model, "result", None)
    row = {"dataset": args.dataspec, "model": args.model, "params": params, "seed": args.seed,
           "valid": {k: round(v, 5) for k, v in res.metrics.items() if k in ("HR@10", "NDCG@10", "HR@20", "NDCG@20")},
           "internal_best": round(result.best_metric, 5) if result else None,
           "best_epoch": result.best_epoch if result else None, "epochs_run": result.epochs_run if result else None,
           "fit_seconds": round(fit_s, 1), "load_avg": round(os.getloadavg()[0], 2),
           "load_avg_start": round(load_start, 2),
           "history": result.history if result else None, "threads": args.threads,
           "time": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(row))
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
