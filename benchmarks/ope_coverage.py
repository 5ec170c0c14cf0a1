"""Do the off-policy intervals hold? 50 simulated logs, each estimated, each checked against the truth.

One world (synthetic store + served bundle, no item launches, 3-slot lists). Each run logs `--rounds` sessions
with a stochastic policy (trending through the API, or with probability 0.5 a uniformly random list; exact
propensities) under its own seed, then estimates the oracle's and the random policy's click rate per shown item
from that log. The truth is exact under the shopper model: the activity-weighted mean over shoppers of the
examination-weighted click probability of the list each policy shows them.

    nice -n 5 .venv/bin/python benchmarks/ope_coverage.py [--runs 50 --rounds 1500]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from machine import describe  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from aisle.ope import ESTIMATORS, attach_rewards, estimate
from aisle.simulate import Request, ShopperModel, WorldConfig, build_world, make_policy, simulate


def truths(world, model: ShopperModel, k: int) -> dict[str, float]:
    """Exact reward per shown item of the oracle and the random policy over the shoppers' visit distribution."""
    items = np.array([world.item_row[i] for i in world.available])
    util = world.tastes.affinity(np.arange(len(world.tastes.user_ids))[:, None], items[None, :])
    act = world.tastes.activity / world.tastes.activity.sum()
    exam = model.examine(k)
    top = -np.sort(-util, axis=1)[:, :k]
    oracle = (model.click_probability(top).sum(axis=1) / k) @ act
    clickable = 1 / (1 + np.exp(-(model.click_bias + util)))
    rand = (clickable.mean(axis=1) * exam.mean()) @ act
    return {"oracle": float(oracle), "random": float(rand)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1500)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--boot", type=int, default=500)
    ap.add_argument("--logging", default="epsilon:trending:0.5")
    args = ap.parse_args()
    model = ShopperModel()
    world = build_world(WorldConfig(n_items=120, n_users=200, n_events=6_000, seed=0, new_items=0))
    world.reset()
    truth = truths(world, model, args.k)
    hits = {(p, e): 0 for p in truth for e in ESTIMATORS}
    values: dict[tuple[str, str], list[float]] = {key: [] for key in hits}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("simulated logs", total=args.runs)
        for run in range(args.runs):
            res = simulate(world, make_policy(args.logging, world, seed=run), args.rounds, k=args.k, seed=run,
                           batch=100, shoppers=model)
            log = attach_rewards(res.impressions, res.events, "click")
            reqs = [Request(r["request_id"], r["user_id"], r["session_id"], r["timestamp"])
                    for r in res.impressions.unique("request_id", keep="first").iter_rows(named=True)]
            for name in truth:
                est = estimate(log, make_policy(name, world, seed=run).probabilities(reqs, args.k),
                               n_boot=args.boot, seed=run)
                for e in est.estimates:
                    hits[(name, e.estimator)] += e.contains(truth[name])
                    values[(name, e.estimator)].append(e.value)
            bar.advance(task)
    world.close()
    print(f"machine: {describe()}")
    print(f"{args.runs} logs of {args.rounds:,} sessions x {args.k} slots by {args.logging}; 95% bootstrap intervals")
    print(f"{'policy':<8}{'truth':>9}  {'estimator':<10}{'mean estimate':>14}{'sd':>9}{'coverage':>10}")
    for (name, est_name), n in hits.items():
        v = np.array(values[(name, est_name)])
        print(f"{name:<8}{truth[name]:>9.5f}  {est_name:<10}{v.mean():>14.5f}{v.std():>9.5f}{n / args.runs:>10.0%}")


if __name__ == "__main__":
    main()
