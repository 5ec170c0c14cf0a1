"""Paired per-user tests between models of different `aisle evaluate` runs (the "paired ΔNDCG@10" columns).

`aisle evaluate` pairs only the models of one run. A pipeline with the deep source and the same pipeline without
it are two runs of `--models pipeline` with different `--config` files, so their `--per-user` files are joined
here, user by user, by the same test as the harness (`aisle.evaluate.report.paired_tests`):

    .venv/bin/python benchmarks/paired_runs.py deep=/tmp/beauty_deep_0.parquet:pipeline \
        fast=/tmp/beauty_fast_0.parquet:pipeline markov=/tmp/beauty_deep_0.parquet:markov

The first LABEL=FILE[:MODEL] is compared with each of the others (MODEL: the `model` column to take, default the
only one in the file). Runs of the same dataset and split only: the users must be the same test users.

Several seeds: FILE may be a comma-separated list (`deep=d0.parquet,d1.parquet,d2.parquet:pipeline`), one file
per seed; each user's metrics are then averaged over the files before the test. Why averaged and not pooled: the
same user appears once per seed, so pooling the 3 x users differences would count one user's luck three times
as if it were three independent users (the p-value would be too small); averaging per user keeps one
observation per user and still cancels most of the run-to-run noise of the fits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from rich.console import Console

from aisle.evaluate.report import paired_table, paired_tests

METRICS = ["NDCG@10", "HR@10"]


def read_run(spec: str) -> pl.DataFrame:
    """One LABEL=FILE[,FILE...][:MODEL] argument as per-user rows whose `model` is LABEL (several files: each
    user's metrics averaged over them, see the module docstring)."""
    label, _, rest = spec.partition("=")
    paths, _, model = rest.partition(":")
    if not label or not paths:
        raise SystemExit(f"{spec!r}: expected LABEL=FILE[,FILE...][:MODEL]")
    runs = [_read_one(path, model, label) for path in paths.split(",")]
    if len(runs) == 1:
        return runs[0]
    users = [set(run["user_id"].to_list()) for run in runs]
    if any(u != users[0] for u in users[1:]):
        raise SystemExit(f"{label}: the files do not hold the same test users; average seeds of one split only")
    metrics = [c for c in runs[0].columns if c not in ("user_id", "model") and runs[0][c].dtype.is_numeric()]
    return (pl.concat([run.select("user_id", *metrics) for run in runs])
            .group_by("user_id", maintain_order=True).agg(pl.col(metrics).mean())
            .with_columns(pl.lit(label).alias("model")))


def _read_one(path: str, model: str, label: str) -> pl.DataFrame:
    """One file's rows of MODEL (default: the only model in it), relabelled LABEL."""
    if not Path(path).exists():
        raise SystemExit(f"{path}: no such file")
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
    ap.add_argument("runs", nargs="+", help="LABEL=FILE[,FILE...][:MODEL]; the first is compared with each other "
                    "one; several files (one per seed) are averaged per user")
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
