"""Does a ranker learned from impressions beat the combiner it replaces? Closed-loop simulation, paired by seed.

Per seed: a small synthetic world (`aisle.simulate`) serves its bundle (item-to-item + trending sources, the
LightGBM combiner); `--log-rounds` sessions are logged under the served pipeline with epsilon-random lists
(`epsilon:pipeline:EPS`, exact propensities); the impression ranker is trained on that log
(`aisle.implearn.train`, unbiased LambdaMART) and put in a copy of the bundle; then both bundles serve
`--eval-rounds` sessions to the same shoppers in the same order (same simulation seed), and their click rate and
conversion are compared. The off-policy estimate (SNIPS and DR of the click rate per shown item, both pipelines
re-ranking the logged requests) comes from the logging run only, and the table says whether its sign agrees with
the simulated difference. `--no-debias` adds a third arm: the same ranker trained with clicks at face value.

    nice -n 10 .venv/bin/python benchmarks/impression_ranker.py [--seeds 5 --log-rounds 3000 --eval-rounds 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from machine import describe  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from aisle import implearn
from aisle.bundle import Bundle, fingerprint
from aisle.pipeline import PipelineConfig, SourceSpec
from aisle.simulate import ServedPolicy, WorldConfig, build_world, make_policy, simulate

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))


def one_seed(seed: int, args: argparse.Namespace, tick: Any) -> dict[str, Any]:
    cfg = WorldConfig(n_items=args.items, n_users=args.users, n_events=args.events, seed=seed, new_items=0)
    pipeline = PipelineConfig(sources=SOURCES, rounds=cfg.pipeline_rounds, ranker="impressions")
    out: dict[str, Any] = {"seed": seed}
    with tempfile.TemporaryDirectory(prefix="aisle-implearn-") as tmp, build_world(cfg, pipeline=pipeline) as world:
        logged = simulate(world, make_policy(f"epsilon:pipeline:{args.epsilon}", world, seed=seed), args.log_rounds,
                          k=args.k, seed=seed, batch=args.batch)
        tick()
        past = pl.concat([world.dataset.events, logged.events.select(world.dataset.events.columns)],
                         how="vertical_relaxed")
        serving = Bundle.load(world.bundle_path, search=False)
        arms = {"combiner": world}
        variants = {"impressions": True, **({"face value": False} if args.no_debias else {})}
        for name, debias in variants.items():
            ranker = implearn.train(serving, logged.impressions, logged.events, history_events=past, debias=debias,
                                    seed=seed)
            bundle = implearn.with_ranker(serving, ranker, world.dataset.events)
            path = Path(tmp) / name.replace(" ", "_") / "bundle"
            bundle.save(path, data_fingerprint=fingerprint(world.dataset.events),
                        metrics=bundle.manifest.get("metrics", {}))
            arms[name] = world.serving(path)
            if debias:
                out["ope"] = implearn.compare_off_policy(bundle, serving, logged.impressions, logged.events,
                                                         history_events=past, k=args.k, seed=seed)
                out["importance"] = dict(list(ranker.importance().items())[:5])
        tick()
        for name, arm in arms.items():
            result = simulate(arm, ServedPolicy(arm), args.eval_rounds, k=args.k, seed=10_000 + seed,
                              batch=args.batch)
            out[name] = {m: result.metrics[arm_name][m] for arm_name in result.metrics
                         for m in ("click_rate", "conversion", "revenue_per_session")}
            if arm is not world:
                arm.close()
            tick()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--log-rounds", type=int, default=3000)
    ap.add_argument("--eval-rounds", type=int, default=2000)
    ap.add_argument("--epsilon", type=float, default=0.3)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--events", type=int, default=8_000)
    ap.add_argument("--no-debias", action="store_true", help="also serve a ranker trained on clicks at face value")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    steps = 3 + (1 if args.no_debias else 0) + 1
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("log, train, serve", total=args.seeds * steps)
        for seed in range(args.seeds):
            rows.append(one_seed(seed, args, lambda: bar.advance(task)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    print(f"machine: {describe()}")
    print(f"{args.seeds} seeds; log {args.log_rounds:,} sessions by epsilon:pipeline:{args.epsilon}; "
          f"serve {args.eval_rounds:,} sessions per arm; k={args.k}")
    arms = [a for a in ("impressions", "face value") if a in rows[0]]
    head = f"{'seed':>4} {'metric':<12}{'combiner':>10}" + "".join(f"{a:>13}" for a in arms)
    print(head + f"{'OPE SNIPS diff':>16}{'OPE DR diff':>13}{'sign agrees':>13}")
    for metric in ("click_rate", "conversion"):
        diffs = {a: [] for a in arms}
        for r in rows:
            line = f"{r['seed']:>4} {metric:<12}{r['combiner'][metric]:>10.4f}"
            for a in arms:
                line += f"{r[a][metric]:>13.4f}"
                diffs[a].append(r[a][metric] - r["combiner"][metric])
            if metric == "click_rate":
                sim = r["impressions"][metric] - r["combiner"][metric]
                snips, dr = r["ope"]["difference"]["SNIPS"], r["ope"]["difference"]["DR"]
                line += f"{snips:>+16.4f}{dr:>+13.4f}{'yes' if np.sign(snips) == np.sign(sim) else 'no':>13}"
            print(line)
        for a in arms:
            d = np.array(diffs[a])
            sd = d.std(ddof=1) if len(d) > 1 else float("nan")
            t = d.mean() / (sd / np.sqrt(len(d))) if len(d) > 1 and sd > 0 else float("nan")
            print(f"     {metric:<12}{a} - combiner: mean {d.mean():+.4f} (paired t {t:.2f}, "
                  f"{int((d > 0).sum())} of {len(d)} seeds better)")


if __name__ == "__main__":
    main()
