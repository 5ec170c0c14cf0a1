"""Time one SASRec training step on Amazon Beauty: fp32 vs bf16 autocast, with and without item side features.

Why: CPU time is the scarce resource, and whether bf16 autocast pays depends on the CPU (it needs AMX or
AVX512-BF16 to be fast). The trainer's `amp="auto"` follows what this measures. Steps are real Beauty batches
(the runner's leave-one-out training split, length-bucketed, default SASRec configuration).

    .venv/bin/python benchmarks/deep_profile.py --steps 30 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

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

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon-s3rec" / "Beauty.txt"


def step_ms(train: TrainData, *, amp: str, features: bool, steps: int) -> tuple[float, int, float]:
    """(ms per optimiser step, batches per epoch, target positions per step)."""
    model = SASRec(use_features=features, progress=False, device="cpu")
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = read_dataspec(args.data)
    split = make_split(data.events, "loo")
    catalog = data.items if data.items.height else None
    train = TrainData.from_events(split.train, items=item_vocab(data.events, catalog), catalog=catalog)
    table = Table(title=f"SASRec step on {Path(args.data.split(':', 1)[1]).name}, {args.threads} threads, "
                        f"load {os.getloadavg()[0]:.1f}")
    for col in ("amp", "features", "ms/step", "positions/step", "est. s/epoch"):
        table.add_column(col, justify="right")
    for amp in ("off", "bf16"):
        for features in (False, True):
            ms, n_batches, pos = step_ms(train, amp=amp, features=features, steps=args.steps)
            table.add_row(amp, str(features), f"{ms:.0f}", f"{pos:.0f}", f"{ms * n_batches / 1000:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
