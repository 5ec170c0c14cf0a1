"""The Beauty setup of benchmarks/optimize.py: split, training data and the cached teacher.

Why a cache: the teacher is SASRec fitted as `aisle evaluate` fits it for the test row (leave-one-out, fitted on
train + validation targets, seed 0) with the default configuration except `TEACHER` (8 epochs, the default
until 2026-12-04: the tables in RESULTS.md were measured on that fit, 5-10 minutes on the 2 cores); every
optimisation is measured against that one fit, so it is trained once and saved under `--cache`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/optimize_setup.py --cache /tmp/aisle-opt --student
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from aisle.data.readers import read_dataspec
from aisle.data.splits import Split
from aisle.evaluate.protocol import item_vocab
from aisle.evaluate.runner import make_split
from aisle.models.base import TrainData
from aisle.models.sequential import SASRec

BEAUTY = "s3rec:../shared/data/amazon-s3rec/Beauty.txt"


@dataclass
class Setup:
    split: Split
    train: TrainData  # split.history("test"): what the teacher is fitted on and what test queries may see
    teacher: SASRec


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


TEACHER = {"epochs": 8}


def load_setup(dataspec: str, cache: Path, *, seed: int = 0, console: bool = True, teacher: bool = True) -> Setup:
    data = read_dataspec(dataspec)
    split = make_split(data.events, "loo")
    catalog = data.items if data.items.height else None
    vocab = item_vocab(data.events, catalog)
    train = TrainData.from_events(split.history("test"), items=vocab, catalog=catalog)
    folder = cache / "teacher"
    if not teacher:  # the data only (the memory probe loads the model itself)
        return Setup(split, train, None)  # type: ignore[arg-type]
    if (folder / "model.json").exists():
        model = SASRec.load(folder)
    else:
        seed_all(seed)
        t0 = time.perf_counter()
        model = SASRec(seed=seed, progress=console, **TEACHER).fit(train)
        model.save(folder)
        (cache / "teacher.log").write_text(f"fit {time.perf_counter() - t0:.0f} s\n")
    return Setup(split, train, model)


STUDENT = {"dim": 32, "layers": 1, "epochs": 4}  # half the teacher's epochs: a distillation step costs ~2x


def load_student(setup: Setup, cache: Path, *, seed: int = 0, console: bool = True) -> SASRec:
    """The distilled student (STUDENT's shape, the teacher's training settings), trained once and cached."""
    from aisle.optimize.distill import DistillConfig, distill

    folder = cache / "student"
    if (folder / "model.json").exists():
        return SASRec.load(folder)
    seed_all(seed)
    t0 = time.perf_counter()
    student = distill(setup.teacher, setup.train, cfg=DistillConfig(), seed=seed, progress=console, **STUDENT)
    student.save(folder)
    (cache / "student.log").write_text(f"fit {time.perf_counter() - t0:.0f} s\n")
    return student


def test_queries(setup: Setup) -> tuple[list[np.ndarray], np.ndarray]:
    """Every test user's query history (item indices, train + validation target) and test target index."""
    test = setup.split.test
    users = setup.train.users.encode(test["user_id"].to_list())
    targets = setup.train.items.encode(test["item_id"].to_list())
    seqs = setup.train.sequences()
    ok = (users >= 0) & (targets >= 0)
    return [seqs[u] for u in users[ok]], targets[ok]


def sample_queries(setup: Setup, n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` test users' query histories, a seeded sample (the latency and agreement queries)."""
    hists, _ = test_queries(setup)
    pick = np.random.default_rng(seed).choice(len(hists), size=min(n, len(hists)), replace=False)
    return [hists[i] for i in np.sort(pick)]


def interleaved_ms(fns: dict[str, Callable[[Any], Any]], inputs: Sequence[Any], *, warmup: int = 20
                   ) -> dict[str, np.ndarray]:
    """Per-call milliseconds of every function on every input, the functions taking turns on each input, so a
    change of machine load during the run reaches all of them alike."""
    for x in inputs[:warmup]:
        for f in fns.values():
            f(x)
    out: dict[str, list[float]] = {k: [] for k in fns}
    for x in inputs:
        for k, f in fns.items():
            t0 = time.perf_counter()
            f(x)
            out[k].append(time.perf_counter() - t0)
    return {k: np.asarray(v) * 1000.0 for k, v in out.items()}


def per_second(fn: Callable[[Any], Any], batches: Sequence[Any], size: int) -> float:
    """Items of `size` per batch processed per second (one warm-up batch first)."""
    fn(batches[0])
    t0 = time.perf_counter()
    for b in batches:
        fn(b)
    return size * len(batches) / (time.perf_counter() - t0)


def rss_mib() -> float:
    """This process's resident memory (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def single_threaded() -> None:
    """One thread everywhere: torch, faiss, OpenBLAS and OpenMP pools (ONNX sessions get 1 intra-op thread).
    On the shared 2 cores a multi-threaded BLAS call in a single request spin-waits against other processes:
    a 12k x 64 matrix-vector product took 16 ms instead of 0.15 ms."""
    import faiss
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    threadpool_limits(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=BEAUTY)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/aisle-opt"))
    ap.add_argument("--student", action="store_true", help="also distil the student (as long as the teacher)")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    setup = load_setup(args.data, args.cache)
    if args.student:
        load_student(setup, args.cache)
    print(f"teacher ready: {setup.train.n_items} items, {setup.train.n_users} users, "
          f"{pl.Series(setup.split.test['user_id']).len()} test targets")


if __name__ == "__main__":
    main()
