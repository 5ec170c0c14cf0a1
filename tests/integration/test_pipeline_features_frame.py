"""`benchmarks/pipeline_features.py --save-frame/--load-frame`: combiner variants trained on a saved frame must
score exactly what they score in the run that fitted it, or every cheap trial on a saved Beauty frame would
measure something else than the pipeline. Also: a variant that asks for fewer training queries trains on fewer,
and a frame is refused for another dataset or seed rather than silently compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "pipeline_features.py"
CONFIG = Path(__file__).parents[2] / "benchmarks" / "pipeline_fast.toml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--config", str(CONFIG)], capture_output=True,
                          text=True, env=env, timeout=900)


@pytest.mark.realdata
def test_a_saved_frame_scores_the_variants_as_the_fitting_run_did(tmp_path: Path) -> None:
    dataspec = f"movielens:{shared_path('movielens-100k')}"
    fitted = _run(dataspec, "--variants", "none,none+nrank", "--save-frame", str(tmp_path / "frame"),
                  "--json", str(tmp_path / "fitted.json"))
    assert fitted.returncode == 0, fitted.stderr
    loaded = _run(dataspec, "--variants", "none,none+nrank,none@max_train_queries=300", "--load-frame",
                  str(tmp_path / "frame"), "--json", str(tmp_path / "loaded.json"), "--per-user",
                  str(tmp_path / "users.parquet"))
    assert loaded.returncode == 0, loaded.stderr
    before = {r["variant"]: r for r in json.loads((tmp_path / "fitted.json").read_text())["rows"]}
    after = {r["variant"]: r for r in json.loads((tmp_path / "loaded.json").read_text())["rows"]}
    for name, row in before.items():
        assert {k: v for k, v in after[name].items() if k != "combiner CPU s"} == \
            {k: v for k, v in row.items() if k != "combiner CPU s"}
    assert int(after["none@max_train_queries=300"]["queries"]) < int(after["none"]["queries"])
    import polars as pl

    users = pl.read_parquet(tmp_path / "users.parquet")
    assert users.height == 3 * json.loads((tmp_path / "loaded.json").read_text())["users"]
    assert abs(users.filter(pl.col("model") == "none")["NDCG@10"].mean() - after["none"]["NDCG@10"]) < 1e-9

    other = _run(dataspec, "--variants", "none", "--seed", "1", "--load-frame", str(tmp_path / "frame"))
    assert other.returncode != 0 and "at seed 0, not" in other.stderr
