"""The simulator over the real API: the orderings that must hold, and experiments whose truth is planted."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.experiments.analysis import report
from aisle.simulate import Arm, World, WorldConfig, build_world, make_policy, simulate
from aisle.types import IMPRESSION_SCHEMA

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with build_world(WorldConfig(n_items=300, n_users=200, n_events=8_000, seed=0, new_items=20)) as w:
        yield w


def test_oracle_beats_the_pipeline_beats_trending_beats_random_on_click_rate(world: World) -> None:
    clicks = dict.fromkeys(("oracle", "pipeline", "trending", "random"), 0)
    shown = dict.fromkeys(clicks, 0)
    for seed in range(5):
        for name in clicks:
            res = simulate(world, make_policy(name, world, seed=seed), 200, k=10, seed=seed, batch=4)
            m = res.metrics[name]
            clicks[name] += m["clicks"]
            shown[name] += m["impressions"]
            if name == "oracle":
                assert m["cumulative_regret"] == pytest.approx(0.0, abs=1e-9)
            else:
                assert m["cumulative_regret"] > 0
    rate = {p: clicks[p] / shown[p] for p in clicks}
    assert rate["oracle"] > rate["pipeline"] > rate["trending"] > rate["random"], rate


def test_logs_have_the_shared_shapes_and_new_items_reach_the_lists(world: World) -> None:
    res = simulate(world, make_policy("epsilon:pipeline:0.5", world), 120, k=5, seed=1, batch=3)
    assert res.impressions.schema == pl.Schema(IMPRESSION_SCHEMA)
    assert res.impressions.height == 600 and res.impressions["propensity"].is_between(0, 1, closed="right").all()
    # every event names a list that showed its item
    shown = set(zip(res.impressions["request_id"], res.impressions["item_id"], strict=True))
    assert res.events.height > 0
    assert all((r, i) in shown for r, i in zip(res.events["request_id"], res.events["item_id"], strict=True))
    m = res.metrics[res.impressions["model_version"][0]]
    assert m["new_items_launched"] == 20 and m["new_item_coverage"] > 0


@pytest.mark.slow
def test_a_planted_conversion_lift_is_detected_and_an_a_a_run_shows_none() -> None:
    """2,000 shoppers (power comes from shoppers: their sessions are alike), the oracle's lists in both arms."""
    with build_world(WorldConfig(n_items=300, n_users=2_000, n_events=20_000, seed=0, new_items=0)) as world:
        oracle = make_policy("oracle", world)
        planted = simulate(world, {"control": Arm(oracle), "treatment": Arm(oracle, conversion_lift=0.10)}, 8_000,
                           k=10, seed=7, batch=500)
        same = simulate(world, {"A1": Arm(oracle), "A2": Arm(oracle)}, 8_000, k=10, seed=8, batch=500)
    rep = report(planted.impressions, planted.events, prices=planted.prices)
    cmp = rep.arm("treatment").vs_control["conversion"]
    assert cmp.significant and cmp.low < 0.1 * rep.arm("control").metrics["conversion"].value < cmp.high, rep.table()
    rep = report(same.impressions, same.events, control="A1")
    assert not any(c.significant for c in rep.arm("A2").vs_control.values()), rep.table()
    assert {a.arm for a in rep.arms} == {"A1", "A2"} and np.isclose(sum(a.sessions for a in rep.arms), 8_000)


@pytest.mark.slow
def test_cli_simulate_then_ope_then_experiment_report(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "aisle"]
    small = ["--items", "120", "--users", "80", "--events", "2000", "--new-items", "0", "--rounds", "60",
             "--k", "3", "--batch", "10"]
    out = subprocess.run([*run, "simulate", "--policy", "epsilon:trending:0.5", *small, "--out", str(tmp_path / "log")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "epsilon:trending:0.5" in out.stdout and (tmp_path / "log" / "impressions.parquet").exists()
    out = subprocess.run([*run, "ope", str(tmp_path / "log"), "--policy", "oracle", "--boot", "100"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "SNIPS" in out.stdout and "DR" in out.stdout
    out = subprocess.run([*run, "simulate", "--arms", "control=random,treatment=oracle", *small, "--out",
                          str(tmp_path / "ab")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([*run, "experiment", "report", str(tmp_path / "ab")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "conversion" in out.stdout and "treatment" in out.stdout
    bad = subprocess.run([*run, "experiment", "report", str(tmp_path / "nope")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "missing" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([*run, "simulate", "--policy", "bogus", *small], capture_output=True, text=True, env=env,
                         timeout=300)
    assert bad.returncode == 2 and "unknown policy 'bogus'" in bad.stderr
    bad = subprocess.run([*run, "ope", str(tmp_path / "log"), "--policy", "epsilon:oracle:2"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "epsilon must be in (0, 1]" in bad.stderr
