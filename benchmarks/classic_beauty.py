"""Classic recommenders on Amazon Beauty (S3-Rec files), leave-one-out, full ranking over all 12,101 items.

Protocol (the published one, see ../shared/data/amazon-s3rec/README.md): per user the last item is the test
target and the one before it the validation target. Hyper-parameters are chosen on the validation targets
(fit on train, history = train); the chosen model is refitted on train + validation and scored on the test
targets with history = split.history("test"). Items already in the history are excluded from the ranking.
Ties in scores are broken by item index, like a stable sort. The metric is computed inline here; `aisle evaluate`
is the official path.

    .venv/bin/python benchmarks/classic_beauty.py                       # every model, default parameters
    .venv/bin/python benchmarks/classic_beauty.py --models itemknn ease --search   # grid on validation
    .venv/bin/python benchmarks/classic_beauty.py --models markov --set markov.window=3   # one override

Measured (2 shared CPU cores; defaults = the best configurations found on the validation targets), test HR@10 /
NDCG@10: markov 0.0855 / 0.0557, ease 0.0885 / 0.0531, itemknn 0.0807 / 0.0471, userknn 0.0800 / 0.0467,
fbt 0.0818 / 0.0467, als 0.0720 / 0.0388, bpr 0.0372 / 0.0203, pop 0.0135 / 0.0061 (published GRU4Rec 0.0137).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from aisle.data.readers import read_dataspec
from aisle.data.splits import leave_one_out
from aisle.models.base import QueryBatch, Recommender, TrainData, Vocab
from aisle.models.registry import MODELS

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon-s3rec" / "Beauty.txt"
PUBLISHED = {"PopRec": (0.0152, 0.0068), "GRU4Rec": (0.0283, 0.0137), "SASRec": (0.0605, 0.0318),
             "S3-Rec": (0.0647, 0.0327)}


def hr_ndcg(model: Recommender, data: TrainData, users: np.ndarray, targets: np.ndarray, k: int = 10,
            batch: int = 2048) -> tuple[float, float]:
    """HR@k and NDCG@k of one target per query; history items excluded; ties broken by lower item index."""
    seqs = data.sequences()
    hits, gains = 0.0, 0.0
    for start in range(0, len(users), batch):
        u, t = users[start:start + batch], targets[start:start + batch]
        hist = [seqs[i] for i in u]
        s = model.score(QueryBatch(u, hist)).astype(np.float32, copy=True)
        rows = np.repeat(np.arange(len(u)), [len(h) for h in hist])
        s[rows, np.concatenate(hist)] = -np.inf
        ts = s[np.arange(len(u)), t][:, None]
        col = np.arange(s.shape[1])[None, :]
        rank = (s > ts).sum(1) + ((s == ts) & (col < t[:, None])).sum(1)
        hit = rank < k
        hits += hit.sum()
        gains += (1.0 / np.log2(rank[hit] + 2.0)).sum()
    return hits / len(users), gains / len(users)


def targets_of(frame: Any, data: TrainData) -> tuple[np.ndarray, np.ndarray]:
    users = data.users.encode(frame["user_id"].to_list())
    items = data.items.encode(frame["item_id"].to_list())
    ok = (users >= 0) & (items >= 0)
    return users[ok], items[ok]


def grid(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(space[k] for k in keys))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    # content is left out by default: the S3-Rec files carry attribute ids only, no item text to embed
    ap.add_argument("--models", nargs="*", default=[m for m in MODELS if m != "content"])
    ap.add_argument("--search", action="store_true", help="try each model's search_space on validation targets")
    ap.add_argument("--set", nargs="*", default=[], help="override parameters, e.g. itemknn.shrink=5")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console = Console()

    ds = read_dataspec(f"s3rec:{args.data}")
    split = leave_one_out(ds.events)
    items = Vocab.of(ds.events["item_id"].unique(maintain_order=True).to_list())
    train = TrainData.from_events(split.train, items=items, catalog=ds.items)
    full = TrainData.from_events(split.history("test"), items=items, catalog=ds.items, users=train.users)
    vu, vt = targets_of(split.valid, train)
    tu, tt = targets_of(split.test, full)
    console.print(f"{args.data.name}: {train.n_users} users, {train.n_items} items, "
                  f"{train.events.height} train events, {len(vu)} valid / {len(tu)} test targets")

    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, val = item.split("=", 1)
        name, param = key.split(".", 1)
        overrides.setdefault(name, {})[param] = type_of(val)

    table = Table("model", "params", "valid NDCG@10", "test HR@10", "test NDCG@10", "fit s", "score s")
    for name in args.models:
        cls = MODELS[name]
        configs = grid(cls.search_space) if args.search else [{}]
        best: tuple[float, dict[str, Any]] = (-1.0, {})
        for cfg in configs:
            cfg = {**cfg, **overrides.get(name, {})}
            t0 = time.perf_counter()
            model = cls(**cfg).fit(train)
            fit_s = time.perf_counter() - t0
            _, nd = hr_ndcg(model, train, vu, vt)
            console.print(f"  {name} {cfg}: valid NDCG@10 {nd:.4f} (fit {fit_s:.1f}s)")
            if nd > best[0]:
                best = (nd, cfg)
        t0 = time.perf_counter()
        model = cls(**best[1]).fit(full)
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        hr, nd = hr_ndcg(model, full, tu, tt)
        score_s = time.perf_counter() - t1
        table.add_row(name, str(best[1] or "defaults"), f"{best[0]:.4f}", f"{hr:.4f}", f"{nd:.4f}",
                      f"{fit_s:.1f}", f"{score_s:.1f}")
        console.print(f"{name}: test HR@10 {hr:.4f} NDCG@10 {nd:.4f} (fit {fit_s:.1f}s, score {score_s:.1f}s)")
    for ref, (hr, nd) in PUBLISHED.items():
        table.add_row(f"[dim]{ref} (published)[/dim]", "", "", f"{hr:.4f}", f"{nd:.4f}", "", "")
    console.print(table)


def type_of(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


if __name__ == "__main__":
    main()
