"""Does exploring cold items pay? Exploration (Thompson, LinUCB) vs greedy (the served pipeline) vs random, over
several seeds, on a horizon in which new items arrive.

Each seed builds its own world (synthetic store, the newest `--new-items` items held out of the bundle and launched
through `PUT /items` in 4 waves during the run) and runs every policy on the same shoppers (same seed): greedy is the
served pipeline as it is (its cold-start rule `new_item_slot` included), the exploring policies are the same app with
`[explore]` on, which takes over from `new_item_slot` (their state learns every `--update-every` lists, as a worker
refresh would). Reported per policy, as
the mean over seeds with the paired difference to greedy: click rate per shown item, conversion, cumulative regret
(expected clicks the oracle's lists would have had minus the lists shown, exact under the shopper model), new-item
coverage (launched items shown at least once), and the click-rate cost of exploring.

    nice -n 10 .venv/bin/python benchmarks/explore.py [--seeds 5 --rounds 1500 --new-items 60]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from machine import describe  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from aisle.config import RulesConfig
from aisle.simulate import WorldConfig, build_world, make_policy, simulate

METRICS = ("click_rate", "conversion", "cumulative_regret", "new_item_coverage", "new_item_impression_share")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--events", type=int, default=8_000)
    ap.add_argument("--new-items", type=int, default=60)
    ap.add_argument("--share", type=float, default=1.0)
    ap.add_argument("--update-every", type=int, default=20)
    ap.add_argument("--explore", default="", help="More [explore] settings as JSON, e.g. '{\"cold_events\": 1}'.")
    ap.add_argument("--rules", default="", help="[rules] for the exploring policies' app as JSON, e.g. "
                    "'{\"new_item_slot\": null}' (greedy keeps the default rules).")
    ap.add_argument("--policies", default="pipeline,explore:thompson,explore:linucb,random")
    ap.add_argument("--json", type=Path, default=None, help="Also write the per-seed metrics here.")
    args = ap.parse_args()
    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("lists", total=args.seeds * len(names) * args.rounds)
        for seed in range(args.seeds):
            bar.update(task, description=f"seed {seed}: building the world")
            cfg = WorldConfig(n_items=args.items, n_users=args.users, n_events=args.events, seed=seed,
                              new_items=args.new_items)
            with build_world(cfg) as world:
                for name in names:
                    bar.update(task, description=f"seed {seed}: {name}")
                    policy = make_policy(name if not name.startswith("explore:") or name.count(":") == 2
                                         else f"{name}:{args.share:g}", world, seed=seed)  # share: the name's
                    if hasattr(policy, "update_every"):
                        policy.update_every = args.update_every
                        policy.explore = policy.explore.model_copy(update=json.loads(args.explore or "{}"))
                        policy.rules = RulesConfig.model_validate(json.loads(args.rules)) if args.rules else None
                    done = bar.tasks[0].completed
                    res = simulate(world, policy, args.rounds, k=args.k, seed=seed, batch=1,
                                   progress=lambda d, _t, base=done: bar.update(task, completed=base + d))
                    runs[name].append(res.metrics[policy.name])
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    print(f"\n{describe()}")
    print(f"{args.seeds} seeds x {args.rounds:,} lists of {args.k}; {args.items} items ({args.new_items} launched in "
          f"4 waves), {args.users} shoppers; exploration share {args.share:g}, state updated every "
          f"{args.update_every} lists; [explore] {args.explore or 'defaults'}; exploring apps' [rules] "
          f"{args.rules or 'defaults'}\n")
    base = runs.get("pipeline")
    head = "| policy | " + " | ".join(METRICS) + " | regret vs greedy (per seed) | click rate vs greedy |"
    print(head)
    print("|" + "---|" * (len(METRICS) + 3))
    for name in names:
        m = {c: np.array([r[c] for r in runs[name]]) for c in METRICS}
        cells = [f"{m[c].mean():.4f}" if c != "cumulative_regret" else f"{m[c].mean():.1f}" for c in METRICS]
        if base is not None and name != "pipeline":
            dr = m["cumulative_regret"] - np.array([r["cumulative_regret"] for r in base])
            dc = m["click_rate"] - np.array([r["click_rate"] for r in base])
            cells.append(f"{dr.mean():+.1f} ({', '.join(f'{v:+.0f}' for v in dr)}; {int((dr < 0).sum())}/{len(dr)} "
                         "below)")
            cells.append(f"{dc.mean():+.4f} ({dc.mean() / np.mean([r['click_rate'] for r in base]):+.1%})")
        else:
            cells += ["", ""]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
