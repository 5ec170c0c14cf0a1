"""Buy it again: the repeat-purchase model against "most purchased by this shopper" and "most recent purchase".

Synthetic store with planted cadences (`SyntheticConfig.replenishment`): at each cut time T the model is fitted on
the purchases before T only (no future data); the target of a shopper is their first purchase in (T, T + window]
of an item they had bought before T (the due repeat purchase). Every method ranks the shopper's past purchases
at T; HR@10 is the share of targets in the top 10. It also counts how often a method puts a durable item (a
category without a planted cadence) bought in the last 3 days in the top 10.

Real logs: REES46 (timestamps, categories): the model fitted on the first half of the log in time, its learned
repeat share per top-level category next to the share observed over the whole log. (The Tmall / Taobao / JData
buy logs are deduplicated user-item pairs whose held-out test pairs exclude bought pairs: they hold no repeat
purchase at all, which the script checks and prints.)

    python benchmarks/buy_again.py                      # the synthetic table
    python benchmarks/buy_again.py --real ../shared/data  # + the real-log tables
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
from rich.progress import track

from machine import describe  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.data.synthetic.replenish import CADENCE_DAYS
from aisle.evaluate.protocol import item_vocab
from aisle.models.base import TrainData
from aisle.models.repeat import DAY_US, RepeatPurchaseModel

K = 10


def most_purchased(items: np.ndarray, times: np.ndarray, k: int) -> list[int]:
    """The shopper's items by purchase count, the most recently bought first among equals."""
    last: dict[int, int] = {}
    count: dict[int, int] = {}
    for i, t in zip(items.tolist(), times.tolist(), strict=True):
        count[i] = count.get(i, 0) + 1
        last[i] = max(last.get(i, 0), t)
    return sorted(count, key=lambda i: (-count[i], -last[i]))[:k]


def most_recent(items: np.ndarray, times: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-times, kind="stable")
    return list(dict.fromkeys(items[order].tolist()))[:k]


def evaluate_cut(events: pl.DataFrame, items_df: pl.DataFrame, cut: object, window_days: float
                 ) -> dict[str, list[float]]:
    """HR@K of each method at one cut time, and its count of just-bought durable items in the top K."""
    before = events.filter(pl.col("timestamp") < cut)
    vocab = item_vocab(events, items_df)
    train = TrainData.from_events(before, items=vocab, catalog=items_df)
    model = RepeatPurchaseModel.from_train(train)
    now = int(cut.timestamp() * 1_000_000)  # type: ignore[attr-defined]
    after = events.filter((pl.col("timestamp") >= cut) & (pl.col("event_type") == "purchase")
                          & (pl.col("timestamp") < cut + timedelta(days=window_days)))  # type: ignore[operator]
    out: dict[str, list[float]] = {"model": [], "most purchased": [], "most recent": [], "durable model": [],
                                   "durable most purchased": [], "durable most recent": []}
    planted = np.array([name in CADENCE_DAYS for name in model.leaf_names] + [False])
    durable = ~planted[model.leaf]  # the ground truth: a category without a planted cadence (-1: unknown)
    for user, rows in after.sort("timestamp").group_by("user_id", maintain_order=True):
        u = train.users.index.get(user[0], -1)
        if u < 0:
            continue
        items, times = model.purchases_of(u)
        bought = set(items.tolist())
        targets = [vocab.index[i] for i in rows["item_id"].to_list() if vocab.index.get(i, -1) in bought]
        if not targets:
            continue
        target = targets[0]
        ranked = {"model": [d.item for d in model.due(items, times, now, user=u, k=K)],
                  "most purchased": most_purchased(items, times, K), "most recent": most_recent(items, times, K)}
        recent = {int(i) for i, t in zip(items, times, strict=True) if now - t < 3 * DAY_US and durable[i]}
        for name, top in ranked.items():
            out[name].append(float(target in top))
            out[f"durable {name}"].append(float(len(recent & set(top))))
    return out


def synthetic(seed: int, share: float, window: float) -> None:
    store = generate(SyntheticConfig(seed=seed, replenishment=share))
    events = store.events
    start = events["timestamp"].min()
    cuts = [start + timedelta(days=d) for d in (120, 135, 150, 165)]
    totals: dict[str, list[float]] = {}
    for cut in track(cuts, description="cut times"):
        for key, vals in evaluate_cut(events, store.items, cut, window).items():
            totals.setdefault(key, []).extend(vals)
    n = len(totals["model"])
    print(f"\nSynthetic store, seed {seed}, replenishment {share}: {events.height:,} events; "
          f"{n:,} due repeat purchases (4 cuts, {window:g}-day window)\n")
    print(f"| method | HR@{K} | durable items bought in the last 3 days, in the top {K} (per shopper) |")
    print("|---|---|---|")
    for name in ("model", "most purchased", "most recent"):
        print(f"| {name} | {np.mean(totals[name]):.3f} | {np.mean(totals['durable ' + name]):.3f} |")
    best = max(np.mean(totals["most purchased"]), np.mean(totals["most recent"]))
    print(f"\nmodel / better baseline: {np.mean(totals['model']) / best:.2f}x")
    model = RepeatPurchaseModel.from_train(TrainData.from_events(events, items=item_vocab(events, store.items),
                                                                 catalog=store.items))
    print("\nWhat it learned on the whole log, consumable categories (planted cadence x each shopper's pace):\n")
    print("| category | planted days | learned typical gap, days | observed repeat share | learned repeat share |")
    print("|---|---|---|---|---|")
    for row in model.category_shares():
        if row["category"] in CADENCE_DAYS:
            print(f"| {row['category']} | {CADENCE_DAYS[row['category']]:g} | {row['typical_gap_days']:.1f} | "
                  f"{row['observed_share']:.3f} | {row['learned_share']:.3f} |")
    durable = [r for r in model.category_shares() if r["category"] not in CADENCE_DAYS and r["buyers"]]
    observed = np.mean([r["observed_share"] for r in durable])
    learned = np.mean([r["learned_share"] for r in durable])
    print(f"| {len(durable)} durable categories (mean) | - | - | {observed:.3f} | {learned:.3f} |")


def rees46(root: Path) -> None:
    from aisle.data.readers import read_dataspec

    path = root / "rees46-events-sample" / "2019-Oct-head.csv"
    if not path.exists():
        print(f"\n(REES46 sample not found at {path}: skipped)")
        return
    data = read_dataspec(f"rees46:{path}")
    events, items = data.events, data.items
    top = items.select("item_id", pl.col("categories").list.first().fill_null("(none)").alias("top"))
    mid = events["timestamp"].min() + (events["timestamp"].max() - events["timestamp"].min()) / 2
    vocab = item_vocab(events, items)
    # categories at the top level: the sample is too small for leaves
    coarse = items.with_columns(pl.col("categories").list.slice(0, 1))
    model = RepeatPurchaseModel.from_train(TrainData.from_events(events.filter(pl.col("timestamp") < mid),
                                                                 items=vocab, catalog=coarse))
    learned = {r["category"]: r for r in model.category_shares()}
    buys = events.filter(pl.col("event_type") == "purchase").join(top, on="item_id", how="left")
    orders = buys.group_by("user_id", "item_id", "top").agg(pl.col("timestamp").sort())
    orders = orders.with_columns(pl.col("timestamp").list.eval(pl.element().diff().dt.total_hours() >= 12)
                                 .list.sum().alias("again"))
    observed = orders.group_by("top").agg(pl.len().alias("pairs"), (pl.col("again") > 0).mean().alias("share"))
    span = events["timestamp"].max() - events["timestamp"].min()
    print(f"\nREES46 sample ({events.height:,} events over {span}; fitted on the first half)\n")
    print("| category | buyer-item pairs | observed repeat share | learned repeat share |")
    print("|---|---|---|---|")
    for row in observed.sort("pairs", descending=True).iter_rows(named=True):
        got = learned.get(row["top"])
        share = "-" if got is None else f"{got['learned_share']:.3f}"
        print(f"| {row['top']} | {row['pairs']} | {row['share']:.3f} | {share} |")


def multibehavior(root: Path) -> None:
    base = root / "multibehavior-tmall-taobao-jdata"
    if not base.exists():
        return
    print("\n| dataset | buy pairs | repeated pairs in buy | test pairs already bought |")
    print("|---|---|---|---|")
    for name in ("tmall", "taobao", "jdata"):
        buy = [tuple(line.split()[:2]) for line in (base / name / "buy.txt").read_text().splitlines() if line]
        test = [tuple(line.split()[:2]) for line in (base / name / "test.txt").read_text().splitlines() if line]
        seen = set(buy)
        print(f"| {name} | {len(buy):,} | {len(buy) - len(seen):,} | {sum(p in seen for p in test):,} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, default=0.3, help="share of shoppers who replenish")
    ap.add_argument("--window", type=float, default=14.0, help="days after the cut a target may fall in")
    ap.add_argument("--real", type=Path, default=None, help="the shared data folder (REES46, multibehavior)")
    args = ap.parse_args()
    print(describe())
    synthetic(args.seed, args.share, args.window)
    if args.real is not None:
        rees46(args.real)
        multibehavior(args.real)


if __name__ == "__main__":
    main()
