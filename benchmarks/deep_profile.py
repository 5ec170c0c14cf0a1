"""Time one SASRec training step: fp32 vs bf16 autocast, with and without item side features.

Why: CPU time is the scarce resource, and whether bf16 autocast pays depends on the CPU (it needs AMX or
AVX512-BF16 to be fast). The trainer's `amp="auto"` follows what this measures. Steps are real batches (the
runner's leave-one-out training split, length-bucketed), Amazon Beauty and the default SASRec configuration
unless `--data` / `--set` say otherwise; the side-feature rows are skipped when the dataset has none.

    .venv/bin/python benchmarks/deep_profile.py --steps 30 --threads 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deep_profile.py --threads 1 --steps 10 \
        --data ml1m-sasrec:../shared/data/movielens-1m/sasrec_split --set max_len=200 --set dropout=0.2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from aisle.data.readers import read_dataspec
from aisle.evaluate.protocol import item_vocab
from aisle.evaluate.runner import make_split
from aisle.models.base import TrainData
from aisle.models.seqtask import SequenceTask
from aisle.models.sequential import SASRec, item_features
from aisle.train.distributed import DistContext
from deep_tune import _value  # the same KEY=VALUE parsing as the tuning script

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon-s3rec" / "Beauty.txt"


def step_ms(train: TrainData, *, amp: str, features: bool, steps: int,
            params: dict[str, Any]) -> tuple[float, int, float]:
    """(ms per optimiser step, batches per epoch, target positions per step)."""
    model = SASRec(**{**params, "use_features": features, "progress": False, "device": "cpu"})
    model.n_items, model.features = train.n_items, item_features(train) if features else None
    net = model._build()
    task = SequenceTask(train.sequences(), model.seq, model.n_items, 0)
    ctx = DistContext()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
    positions, t0 = 0, 0.0
    for done, batch in enumerate(task.batches(0, ctx)):
        if done == 3:  # warm-up steps are not timed
            t0, positions = time.perf_counter(), 0
        with cast:
            loss = task.loss(net, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        positions += int((batch[:, 1:] > 0).sum())
        if done + 1 == steps + 3:
            break
    return (time.perf_counter() - t0) / steps * 1000, task.n_batches(ctx), positions / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=f"s3rec:{DEFAULT}")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="SASRec override (JSON)")
    args = ap.parse_args()
    params = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    torch.set_num_threads(args.threads)
    data = read_dataspec(args.data)
    split = make_split(data.events, "loo")
    catalog = data.items if data.items.height else None
    train = TrainData.from_events(split.train, items=item_vocab(data.events, catalog), catalog=catalog)
    name = Path(args.data.split(":", 1)[1]).name
    table = Table(title=f"SASRec step {params or ''} on {name}, {args.threads} threads, "
                        f"load {os.getloadavg()[0]:.1f}")
    for col in ("amp", "features", "ms/step", "positions/step", "est. s/epoch"):
        table.add_column(col, justify="right")
    has_features = item_features(train) is not None
    for amp in ("off", "bf16"):
        for features in (False, True) if has_features else (False,):
            ms, n_batches, pos = step_ms(train, amp=amp, features=features, steps=args.steps, params=params)
            table.add_row(amp, str(features), f"{ms:.0f}", f"{pos:.0f}", f"{ms * n_batches / 1000:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
