"""Would averaging several fits of one deep model make a stronger source? Scored on the VALIDATION targets only.

Why: a deep fit's quality moves with its seed (on MovieLens-100K the two-tower's validation NDCG@10 spans about
0.01 over four seeds), and a pipeline's deep source is one fit. Averaging k fits' scores is the plain ensemble;
for a dot-product model it is still one dot product (the members' user and item vectors concatenated), so it
could be served as it is. This script measures the gain before anyone builds it.

`fit` trains one model on the runner's validation-protocol training events (`deep_tune.py`'s protocol: leave-one-
out split, fit on `split.history("valid")`, full ranking, history excluded) and saves it; `average` loads saved
fits and scores the mean of the first 1, 2, ..., k of them (raw scores, and per-query standardised scores).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deep_ensemble.py fit movielens:../shared/data/movielens-100k \
        --model twotower --seed 0 --out fits/s0 --set max_len=200 --set epochs=200 --set holdout=true \
        --set eval_every=2 --set patience=10
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deep_ensemble.py average movielens:../shared/data/movielens-100k \
        --model twotower fits/s0 fits/s1 ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aisle.data.readers import read_dataspec
from aisle.evaluate.protocol import evaluate, item_vocab
from aisle.evaluate.runner import make_split
from aisle.models.base import QueryBatch, TrainData
from aisle.models.registry import MODELS

METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")


class Average:
    """The mean score of fitted models (optionally each standardised per query over the items it can rank)."""

    name = "average"

    def __init__(self, models: list[Any], standardise: bool) -> None:
        self.models, self.standardise = models, standardise

    def fit(self, data: TrainData) -> Average:
        return self

    def score(self, batch: QueryBatch) -> np.ndarray:
        total = None
        for model in self.models:
            s = model.score(batch).astype(np.float64)
            if self.standardise:
                ok = np.isfinite(s)
                n = ok.sum(1, keepdims=True)
                mu = np.where(ok, s, 0.0).sum(1, keepdims=True) / n
                sd = np.sqrt((np.where(ok, s - mu, 0.0) ** 2).sum(1, keepdims=True) / n)
                s = (s - mu) / np.maximum(sd, 1e-9)
            total = s if total is None else total + s
        assert total is not None
        return (total / len(self.models)).astype(np.float32)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("fit", "average"))
    ap.add_argument("dataspec")
    ap.add_argument("fits", nargs="*", type=Path, help="average: the saved fits, in the order they are added")
    ap.add_argument("--model", default="twotower", choices=sorted(MODELS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="constructor override (JSON)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="fit: the folder the fitted model is saved in")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = read_dataspec(args.dataspec)
    split = make_split(data.events, "loo")
    catalog = data.items if data.items.height else None
    train = TrainData.from_events(split.history("valid"), items=item_vocab(data.events, catalog), catalog=catalog)

    def scored(model: Any) -> dict[str, float]:
        metrics = evaluate(model, train, split, "valid", ks=(10, 20)).metrics
        return {k: round(metrics[k], 5) for k in METRICS}

    if args.action == "fit":
        if args.out is None:
            ap.error("fit needs --out")
        params = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
        torch.manual_seed(args.seed)
        model = MODELS[args.model](seed=args.seed, **params)
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        model.save(args.out)
        print(json.dumps({"seed": args.seed, "params": params, "fit_s": round(fit_s), "valid": scored(model)}))
        return
    if not args.fits:
        ap.error("average needs the saved fits")
    models = [MODELS[args.model].load(path) for path in args.fits]
    for standardise in (False, True):
        for k in range(1, len(models) + 1):
            print(json.dumps({"members": k, "standardised": standardise,
                              "valid": scored(Average(models[:k], standardise))}))


if __name__ == "__main__":
    main()
