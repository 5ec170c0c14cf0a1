"""`aisle evaluate --per-user`: each test user's metrics, whose means are the reported metrics."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from aisle.cli import app
from aisle.testing.toy import toy_sequences

runner = CliRunner()


def _toy(tmp_path: Path) -> Path:
    path = tmp_path / "Toy.txt"
    path.write_text("\n".join(f"{u} {' '.join(s)}" for u, s in toy_sequences(40, 20, seed=1).items()) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_per_user_rows_average_to_the_reported_metrics(tmp_path: Path, suffix: str) -> None:
    out, per_user = tmp_path / "res.json", tmp_path / f"users{suffix}"
    result = runner.invoke(app, ["evaluate", f"s3rec:{_toy(tmp_path)}", "--models", "pop,markov", "--k", "5",
                                 "--json", str(out), "--per-user", str(per_user)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = pl.read_csv(per_user, schema_overrides={"user_id": pl.String}) if suffix == ".csv" \
        else pl.read_parquet(per_user)
    assert sorted(rows["model"].unique()) == ["markov", "pop"]
    for name, entry in report["models"].items():
        mine = rows.filter(pl.col("model") == name)
        assert mine.height == entry["n_evaluated"] == mine["user_id"].n_unique()
        for metric in ("HR@5", "NDCG@5", "MRR"):
            assert mine[metric].mean() == pytest.approx(entry[metric], abs=1e-6)


def test_per_user_needs_a_known_file_type(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", f"s3rec:{_toy(tmp_path)}", "--models", "pop",
                                 "--per-user", str(tmp_path / "users.txt")])
    assert result.exit_code == 2 and ".parquet or .csv" in result.output
