"""Off-policy evaluation on real logged bandit feedback: the Open Bandit Dataset sample (ZOZOTOWN, 80 items,
3 slots, one log from a uniform-random policy and one from Bernoulli Thompson sampling, each with propensities).

Each policy's click rate is estimated from the other policy's log (IPS, SNIPS, DR, DM with bootstrap intervals)
and set next to its on-policy click rate in its own log. Thompson sampling's probabilities are its time-averaged
action distribution per slot: how often its own log shows each item in each slot.

    nice -n 5 .venv/bin/python benchmarks/open_bandit.py [--data ../shared/data/open-bandit-dataset-sample]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from machine import describe  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from aisle.ope import estimate, read_open_bandit


def on_policy(log: pl.DataFrame, confidence: float) -> tuple[float, float, float]:
    """Click rate of a log and its Wilson interval."""
    n, m = log.height, float(log["reward"].mean())
    z = 1.959963984540054 if confidence == 0.95 else __import__("scipy.stats").stats.norm.ppf(0.5 + confidence / 2)
    centre = (m + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((m * (1 - m) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return m, centre - half, centre + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
                    / "open-bandit-dataset-sample")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--confidence", type=float, default=0.95)
    args = ap.parse_args()
    if not (args.data / "random" / "all.csv.gz").exists():
        sys.exit(f"{args.data}: the Open Bandit sample is not there (see ../shared/data/README)")
    logs = {"random": read_open_bandit(args.data / "random"), "bts": read_open_bandit(args.data / "bts")}
    items = sorted(set(logs["random"]["item_id"]) | set(logs["bts"]["item_id"]), key=int)
    positions = sorted(set(logs["random"]["position"].to_list()))
    # each policy's probability of showing item a in slot p
    slots = pl.DataFrame({"position": positions}, schema={"position": pl.Int32})
    uniform = (pl.DataFrame({"item_id": items}).join(slots, how="cross")
               .with_columns(pl.lit(1 / len(items)).alias("probability")))
    bts_freq = (logs["bts"].group_by("position", "item_id").len()
                .with_columns((pl.col("len") / pl.col("len").sum().over("position")).alias("probability"))
                .drop("len"))
    dist = {"random": uniform, "bts": bts_freq}
    print(f"machine: {describe()}")
    print(f"{'policy':<8}{'from log':<10}{'on-policy CTR [95%]':<30}{'estimator':<10}{'estimate [95%]':<32}contains")
    for target, source in (("bts", "random"), ("random", "bts")):
        truth, tlo, thi = on_policy(logs[target], args.confidence)
        log = logs[source]
        cand = log.select("request_id", "position").join(dist[target], on="position")
        res = estimate(log, cand, confidence=args.confidence, n_boot=args.boot)
        for e in res.estimates:
            print(f"{target:<8}{source:<10}{f'{truth:.5f} [{tlo:.5f}, {thi:.5f}]':<30}{e.estimator:<10}"
                  f"{f'{e.value:.5f} [{e.low:.5f}, {e.high:.5f}]':<32}{'yes' if e.contains(truth) else 'no'}")
        print(f"{'':<8}{'':<10}rows {res.rows:,}, matched {res.matched_rows:,}, max weight {res.max_weight:,.1f}, "
              f"effective sample size {res.effective_sample_size:,.1f}")


if __name__ == "__main__":
    main()
