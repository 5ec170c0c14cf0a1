"""Paired per-user tests between models of different `aisle evaluate` runs (the "paired ΔNDCG@10" columns).

`aisle evaluate` pairs only the models of one run. A pipeline with the deep source and the same pipeline without
it are two runs of `--models pipeline` with different `--config` files, so their `--per-user` files are joined
here, user by user, by the same test as the harness (`aisle.evaluate.report.paired_tests`):

    .venv/bin/python benchmarks/paired_runs.py deep=/tmp/beauty_deep_0.parquet:pipeline \
        fast=/tmp/beauty_fast_0.parquet:pipeline markov=/tmp/beauty_deep_0.parquet:markov

The first LABEL=FILE[:MODEL] is compared with each of the others (MODEL: the `model` column to take, default the
only one in the file). Runs of the same dataset, split and seed only: the users must be the same test users.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from rich.console import Console

from aisle.evaluate.report import paired_table, paired_tests

METRICS = ["NDCG@10", "HR@10"]


def read_run(spec: str) -> pl.DataFrame:
    """One LABEL=FILE[:MODEL] argument as per-user rows whose `model` is LABEL."""
    label, _, rest = spec.partition("=")
    path, _, model = rest.partition(":")
    if not label or not path:
        raise SystemExit(f"{spec!r}: expected LABEL=FILE[:MODEL]")
    rows = pl.read_parquet(path) if Path(path).suffix == ".parquet" else pl.read_csv(
        path, schema_overrides={"user_id": pl.String})
    models = rows["model"].unique().to_list()
    if not model:
        if len(models) != 1:
            raise SystemExit(f"{path} holds {', '.join(models)}: name one as {label}={path}:MODEL")
        model = models[0]
    if model not in models:
        raise SystemExit(f"{path} has no model {model!r}; it has {', '.join(models)}")
    return rows.filter(pl.col("model") == model).with_columns(pl.lit(label).alias("model"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=FILE[:MODEL]; the first is compared with each other one")
    ap.add_argument("--metrics", default=",".join(METRICS))
    args = ap.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("name at least two runs")
    frames = [read_run(spec) for spec in args.runs]
    metrics = [m for m in args.metrics.split(",") if m]
    columns = ["user_id", "model", *metrics]
    per_user = pl.concat([f.select(columns) for f in frames])
    reference = frames[0]["model"][0]
    console = Console()
    for frame in frames:
        console.print(f"{frame['model'][0]}: {frame.height} users, "
                      + ", ".join(f"{m} {frame[m].mean():.4f}" for m in metrics))
    console.print(paired_table(paired_tests(per_user, reference, metrics), reference, metrics))


if __name__ == "__main__":
    main()
