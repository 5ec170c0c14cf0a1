"""benchmarks/paired_runs.py over several seeds: each user's metrics are averaged over the seeds' per-user files
before the paired test (one observation per user), and files of different test users are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "paired_runs.py"


def _per_user(path: Path, model: str, ndcg: list[float], users: list[str] | None = None) -> Path:
    users = users or [str(u) for u in range(len(ndcg))]
    pl.DataFrame({"model": [model] * len(ndcg), "user_id": users, "NDCG@10": ndcg,
                  "HR@10": [float(v > 0) for v in ndcg]}).write_parquet(path)
    return path


def _run(*specs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *specs, "--metrics", "NDCG@10"], capture_output=True,
                          text=True, env={"PYTHONPATH": str(Path(__file__).parents[3] / "src"), "COLUMNS": "200"})


def test_seeds_are_averaged_per_user_before_the_test(tmp_path: Path) -> None:
    a0 = _per_user(tmp_path / "a0.parquet", "pipeline", [0.5, 0.0, 1.0, 0.3])
    a1 = _per_user(tmp_path / "a1.parquet", "pipeline", [0.3, 0.2, 0.6, 0.1])
    b = _per_user(tmp_path / "b.parquet", "itemknn", [0.1, 0.0, 0.5, 0.1])
    out = _run(f"deep={a0},{a1}", f"knn={b}")
    assert out.returncode == 0, out.stderr
    # the per-user means over the two seeds are 0.4, 0.1, 0.8, 0.2: mean 0.375, one row per user
    assert "deep: 4 users, NDCG@10 0.3750" in out.stdout
    # their differences to knn are 0.3, 0.1, 0.3, 0.1: mean +0.2
    assert "+0.2000" in out.stdout


def test_seeds_of_different_test_users_are_refused(tmp_path: Path) -> None:
    a0 = _per_user(tmp_path / "a0.parquet", "pipeline", [0.5, 0.0])
    a1 = _per_user(tmp_path / "a1.parquet", "pipeline", [0.3, 0.2], users=["0", "7"])
    out = _run(f"deep={a0},{a1}", f"knn={a0}")
    assert out.returncode != 0 and "do not hold the same test users" in out.stderr
