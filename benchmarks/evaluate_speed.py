"""Evaluation speed: full-ranking leave-one-out evaluation of a model on Amazon Sports (35,598 users x 18,357 items).

Times, per model: the fit on train + validation targets, and the test evaluation (scoring every user against
every item in batches, excluding each user's history, top-K, the exact rank of every target, all metrics).
`eval s` includes the model's own scoring time, which is also shown alone (`score s`). Best of `--repeat` runs.

    .venv/bin/python benchmarks/evaluate_speed.py                      # pop on Sports
    .venv/bin/python benchmarks/evaluate_speed.py --models pop,als --repeat 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import machine

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "amazon-s3rec" / "Sports_and_Outdoors.txt"


def _model_class(name: str) -> type:
    try:
        from aisle.models.registry import MODELS
    except ImportError:
        MODELS = {}  # noqa: N806
    if name in MODELS:
        return MODELS[name]
    if name in ("pop", "toy-pop"):
        from aisle.testing.toy import ToyPopularity

        return ToyPopularity
    raise SystemExit(f"unknown model {name!r}; known: {', '.join(sorted(MODELS)) or 'toy-pop'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="S3-Rec sequence file")
    parser.add_argument("--models", default="pop", help="comma-separated registry names")
    parser.add_argument("--repeat", type=int, default=1, help="evaluations per model; the best is reported")
    parser.add_argument("--batch-size", type=int, default=None, help="users per scoring batch (default: auto)")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} is absent (the real datasets live in ../shared/data)")

    from aisle.data.readers import read_dataspec
    from aisle.data.splits import leave_one_out
    from aisle.evaluate.protocol import evaluate, item_vocab
    from aisle.models.base import TrainData

    console = Console()
    t0 = time.perf_counter()
    data = read_dataspec(f"s3rec:{args.data}")
    split = leave_one_out(data.events)
    vocab = item_vocab(data.events, data.items)
    train = TrainData.from_events(split.history("test"), items=vocab)
    prep_s = time.perf_counter() - t0

    table = Table(title=f"Full-ranking evaluation on {args.data.stem} ({split.test.height:,} users x "
                        f"{len(vocab):,} items), leave-one-out, K = 10, 20", title_justify="left")
    for col in ("model", "fit s", "eval s", "score s", "users/s", "HR@10", "NDCG@10", "MRR"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        cls = _model_class(name)
        t1 = time.perf_counter()
        model = cls().fit(train)
        fit_s = time.perf_counter() - t1
        runs = [evaluate(model, train, split, "test", ks=(10, 20), batch_size=args.batch_size)
                for _ in range(max(1, args.repeat))]
        best = min(runs, key=lambda r: r.seconds)
        table.add_row(name, f"{fit_s:.2f}", f"{best.seconds:.2f}", f"{best.score_seconds:.2f}",
                      f"{best.n_users / best.seconds:,.0f}", f"{best.metrics['HR@10']:.4f}",
                      f"{best.metrics['NDCG@10']:.4f}", f"{best.metrics['MRR']:.4f}")
    console.print(table)
    console.print(f"read + split + encode: {prep_s:.2f}s. Machine: {machine.describe()};"
                  f" torch threads {__import__('torch').get_num_threads()}.")


if __name__ == "__main__":
    main()
