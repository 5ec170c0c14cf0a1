"""Buy it again: which of a shopper's past purchases they are due to buy again now.

A repeat-purchase model, not a next-item recommender: it scores only items the shopper bought, and its answer
depends on *when* it is asked. What it learns from the purchase log:

* per category (leaf) and per item, the **repeat share**: of the shoppers who bought it, how many bought it again
  (items shrunk towards their category, categories towards the store; pairs first bought too close to the end of
  the log to have had a chance are left out, or the share of slow consumables would be underestimated);
* per category and per item, the **inter-purchase time** as a log-normal (mean and spread of log days between two
  purchases of one item by one shopper), items shrunk towards their category;
* per shopper, their **pace**: how much faster or slower than the item's typical gap they rebuy (a shrunk mean of
  log-gap residuals), and, per item, their own gaps when they have any.

At request time an item bought `e` days ago is scored `share x P(gap <= e) x overdue`: the log-normal CDF says
how likely the next purchase is due by now, so an item bought yesterday scores near 0 whatever its share, and a
durable good (a share under `min_share`, a tent or a laptop) is never proposed at all. `overdue` fades items
far past several cycles (the shopper probably buys them elsewhere now).

Why not a `CandidateSource`: sources answer a `QueryBatch` of item histories with no clock, and merging into the
combiner would rank a due bag of coffee against "more like this"; buy-again is a surface of its own
(`GET /users/{id}/buy-again`), as in the managed services. It is saved in the bundle as JSON and arrays, no pickle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import polars as pl

DAY_US = 86_400_000_000
SAME_ORDER_US = 12 * 3_600_000_000  # two purchase events of one item closer than this are one order
FORMAT = 1


@dataclass(frozen=True)
class Due:
    """One buy-again answer: the item row, its score and why (JSON-ready through `reason`)."""

    item: int
    score: float
    share: float
    expected_days: float
    elapsed_days: float
    times_bought: int

    def reason(self) -> dict[str, Any]:
        every = _days_text(self.expected_days)
        ago = _days_text(self.elapsed_days)
        text = (f"You buy this about every {every}; last bought {ago} ago" if self.times_bought > 1 else
                f"Usually bought again after about {every}; you bought it {ago} ago")
        return {"type": "buy_again", "text": text,
                "expected_days": round(self.expected_days, 1), "elapsed_days": round(self.elapsed_days, 1),
                "times_bought": self.times_bought, "repeat_share": round(self.share, 3)}


def _days_text(days: float) -> str:
    if days < 1.5:
        return "a day"
    if days < 13.5:
        return f"{round(days)} days"
    if days < 60:
        return f"{round(days / 7)} weeks"
    return f"{round(days / 30)} months"


class RepeatPurchaseModel:
    """Repeat shares and inter-purchase times per item and category, and each shopper's pace (module docstring)."""

    def __init__(self, *, shrink_item: float = 5.0, shrink_user: float = 3.0, min_share: float = 0.05,
                 min_sigma: float = 0.2, censor_days: float = 30.0, min_score: float = 0.02) -> None:
        self.shrink_item, self.shrink_user, self.min_share = shrink_item, shrink_user, min_share
        self.min_sigma, self.censor_days, self.min_score = min_sigma, censor_days, min_score
        self.leaf = np.zeros(0, np.int32)
        self.leaf_names: list[str] = []
        self.item_share = np.zeros(0)
        self.item_mu = np.zeros(0)
        self.leaf_share = np.zeros(0)
        self.leaf_mu = np.zeros(0)
        self.leaf_sigma = np.zeros(0)
        self.leaf_observed = np.zeros(0)  # raw repeat share per category (what the benchmark compares)
        self.leaf_buyers = np.zeros(0, np.int64)
        self.user_pace = np.zeros(0)
        self.global_mu, self.global_sigma, self.global_share = math.log(30.0), 1.0, 0.0
        # each known shopper's purchases (CSR by user index): what serving starts from
        self.ptr = np.zeros(1, np.int64)
        self.items = np.zeros(0, np.int32)
        self.times = np.zeros(0, np.int64)

    # ---- fitting -------------------------------------------------------------------------------------

    @classmethod
    def from_train(cls, data: Any, **params: Any) -> RepeatPurchaseModel:
        """Fit on a `TrainData`'s purchase events, categories from its catalog (the leaf of each item's path)."""
        from aisle.pipeline import item_attributes

        attrs = item_attributes(data.catalog, data.n_items)
        purchases = data.events.filter(pl.col("event_type") == "purchase")
        return cls(**params).fit(purchases, attrs.leaf, attrs.leaf_names, data.n_users)

    def fit(self, purchases: pl.DataFrame, leaf: np.ndarray, leaf_names: list[str], n_users: int) -> Self:
        """`purchases`: user_idx, item_idx, timestamp (every purchase event, any order); `leaf`: category code per
        item index (-1 unknown)."""
        self.leaf, self.leaf_names = np.asarray(leaf, np.int32), list(leaf_names)
        n_items, n_leaves = len(self.leaf), len(self.leaf_names)
        p = (purchases.select(pl.col("user_idx").cast(pl.Int64), pl.col("item_idx").cast(pl.Int64),
                              pl.col("timestamp").dt.epoch("us").alias("t"))
             .filter((pl.col("user_idx") >= 0) & (pl.col("item_idx") >= 0)).sort(["user_idx", "item_idx", "t"]))
        u, i, t = (p[c].to_numpy() for c in ("user_idx", "item_idx", "t"))
        # sized from the data, not `np.r_[False, ...]`: a log without purchases (MovieLens ratings) fits an empty
        # model instead of failing the whole `aisle train` after its pipeline was fitted
        same_pair = np.zeros(len(u), bool)
        same_pair[1:] = (u[1:] == u[:-1]) & (i[1:] == i[:-1])
        gap = np.diff(t, prepend=t[:1])
        order = ~same_pair | (gap >= SAME_ORDER_US)  # a new order of the pair (or its first)
        u, i, t, same_pair = u[order], i[order], t[order], same_pair[order]
        gap = np.diff(t, prepend=t[:1])  # between the orders kept
        end = int(t.max()) if len(t) else 0
        first = ~same_pair
        pair = np.cumsum(first) - 1
        n_orders = np.bincount(pair)
        first_t = t[first]
        pair_item = i[first]
        repeated = n_orders >= 2
        # share: pairs first bought at least `censor_days` before the end of the log
        old = first_t <= end - self.censor_days * DAY_US
        if old.sum() < 20:
            old = np.ones_like(old)
        buyers_i = np.bincount(pair_item[old], minlength=n_items).astype(np.float64)
        repeat_i = np.bincount(pair_item[old], weights=repeated[old], minlength=n_items)
        pl_leaf = self.leaf[pair_item[old]]
        ok = pl_leaf >= 0
        buyers_l = np.bincount(pl_leaf[ok], minlength=n_leaves).astype(np.float64)
        repeat_l = np.bincount(pl_leaf[ok], weights=repeated[old][ok], minlength=n_leaves)
        self.global_share = float(repeat_i.sum() / max(buyers_i.sum(), 1.0))
        a = self.shrink_item
        self.leaf_observed = np.divide(repeat_l, buyers_l, out=np.full(n_leaves, np.nan), where=buyers_l > 0)
        self.leaf_buyers = buyers_l.astype(np.int64)
        self.leaf_share = (repeat_l + a * self.global_share) / (buyers_l + a)
        prior_i = np.where(self.leaf >= 0, self.leaf_share[np.maximum(self.leaf, 0)] if n_leaves else 0.0,
                           self.global_share)
        self.item_share = (repeat_i + a * prior_i) / (buyers_i + a)
        # inter-purchase times: log days between consecutive orders of one pair
        lg = np.log(np.maximum(gap[same_pair], 1.0) / DAY_US)
        gi, gu = i[same_pair], u[same_pair]
        if len(lg):
            self.global_mu, self.global_sigma = float(lg.mean()), max(float(lg.std()), self.min_sigma)
        # a typical gap (item or category): the mean over its repeat buyers of each one's mean log gap, so that a
        # shopper who
        # rebuys every week does not outweigh four who rebuy every month
        gp = pair[same_pair]
        n_gaps = np.bincount(gp, minlength=len(n_orders)).astype(np.float64)
        pair_mu = np.divide(np.bincount(gp, weights=lg, minlength=len(n_orders)), n_gaps,
                            out=np.zeros(len(n_orders)), where=n_gaps > 0)
        has = n_gaps > 0
        pair_leaf = self.leaf[pair_item]
        okp = has & (pair_leaf >= 0)
        self.leaf_mu = (np.bincount(pair_leaf[okp], weights=pair_mu[okp], minlength=n_leaves) + 2.0 * self.global_mu
                        ) / (np.bincount(pair_leaf[okp], minlength=n_leaves) + 2.0)
        # the spread: of every gap of the category
        gl = self.leaf[gi]
        okl = gl >= 0
        cnt_l = np.bincount(gl[okl], minlength=n_leaves).astype(np.float64)
        sum_l = np.bincount(gl[okl], weights=lg[okl], minlength=n_leaves)
        sq_l = np.bincount(gl[okl], weights=lg[okl] ** 2, minlength=n_leaves)
        var_l = np.divide(sq_l, cnt_l, out=np.zeros(n_leaves), where=cnt_l > 0) - (
            np.divide(sum_l, cnt_l, out=np.zeros(n_leaves), where=cnt_l > 0)) ** 2
        self.leaf_sigma = np.where(cnt_l >= 5, np.sqrt(np.maximum(var_l, 0.0)), self.global_sigma)
        self.leaf_sigma = np.maximum(self.leaf_sigma, self.min_sigma)
        prior_mu = np.where(self.leaf >= 0, self.leaf_mu[np.maximum(self.leaf, 0)] if n_leaves else 0.0,
                            self.global_mu)
        cnt_i = np.bincount(pair_item[has], minlength=n_items).astype(np.float64)
        sum_i = np.bincount(pair_item[has], weights=pair_mu[has], minlength=n_items)
        self.item_mu = (sum_i + a * prior_mu) / (cnt_i + a)
        # each shopper's pace: their gaps against the item's typical gap
        resid = lg - self.item_mu[gi] if len(lg) else lg
        self.user_pace = np.bincount(gu, weights=resid, minlength=n_users) / (
            np.bincount(gu, minlength=n_users) + self.shrink_user)
        # the shopper's purchases, by user then time, for serving
        by_user = p.filter(pl.Series(order)).sort(["user_idx", "t"])
        self.items = by_user["item_idx"].to_numpy().astype(np.int32)
        self.times = by_user["t"].to_numpy().astype(np.int64)
        self.ptr = np.r_[0, np.cumsum(np.bincount(by_user["user_idx"].to_numpy(), minlength=n_users))].astype(
            np.int64)
        return self

    # ---- answering -----------------------------------------------------------------------------------

    def purchases_of(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """(item rows, timestamps in microseconds) of a known shopper's purchases in the fit; empty otherwise."""
        if user < 0 or user >= len(self.ptr) - 1:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        a, b = self.ptr[user], self.ptr[user + 1]
        return self.items[a:b].astype(np.int64), self.times[a:b]

    def due(self, items: np.ndarray, times: np.ndarray, now_us: int, *, user: int = -1, k: int = 10) -> list[Due]:
        """The `k` purchases most due at `now_us` among `items` bought at `times` (microseconds), best first.

        `user` (-1: unknown) brings in their learned pace; their own gaps on an item always count."""
        items, times = np.asarray(items, np.int64), np.asarray(times, np.int64)
        keep = (times <= now_us) & (items >= 0) & (items < len(self.item_share))
        items, times = items[keep], times[keep]
        if not len(items):
            return []
        o = np.lexsort((times, items))
        items, times = items[o], times[o]
        # one order per pair (repeated events of the same order collapse)
        new_order = np.r_[True, (items[1:] != items[:-1]) | (np.diff(times) >= SAME_ORDER_US)]
        items, times = items[new_order], times[new_order]
        pace = float(self.user_pace[user]) if 0 <= user < len(self.user_pace) else 0.0
        out: list[Due] = []
        for item in np.unique(items):
            ts = times[items == item]
            n = len(ts)
            share = float(self.item_share[item])
            if n >= 2:  # they did buy it again: their own evidence
                share = max(share, (n - 1) / n)
            if share < self.min_share:
                continue  # a durable good: never "buy it again"
            leaf = int(self.leaf[item])
            sigma = float(self.leaf_sigma[leaf]) if leaf >= 0 and len(self.leaf_sigma) else self.global_sigma
            mu = float(self.item_mu[item]) + pace
            if n >= 2:
                own = np.log(np.maximum(np.diff(ts), 1) / DAY_US)
                mu = (float(own.sum()) + mu) / (n - 1 + 1.0)
            elapsed = max((now_us - int(ts[-1])) / DAY_US, 1e-3)
            due = 0.5 * math.erfc(-(math.log(elapsed) - mu) / (sigma * math.sqrt(2.0)))
            expected = math.exp(mu)
            overdue = math.exp(-max(0.0, elapsed / expected - 3.0) / 3.0)
            score = share * due * overdue
            if score >= self.min_score:
                out.append(Due(int(item), score, share, expected, elapsed, n))
        out.sort(key=lambda d: (-d.score, d.item))
        return out[:k]

    def category_shares(self) -> list[dict[str, Any]]:
        """Per category: the repeat share learned (shrunk) next to the raw share observed, buyers, typical gap."""
        return [{"category": name, "buyers": int(self.leaf_buyers[c]), "observed_share": (
            None if not math.isfinite(self.leaf_observed[c]) else float(self.leaf_observed[c])),
                 "learned_share": float(self.leaf_share[c]), "typical_gap_days": float(math.exp(self.leaf_mu[c]))}
                for c, name in enumerate(self.leaf_names)]

    # ---- persistence ---------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        config = {"format": FORMAT, "shrink_item": self.shrink_item, "shrink_user": self.shrink_user,
                  "min_share": self.min_share, "min_sigma": self.min_sigma, "censor_days": self.censor_days,
                  "min_score": self.min_score, "leaf_names": self.leaf_names, "global_mu": self.global_mu,
                  "global_sigma": self.global_sigma, "global_share": self.global_share}
        (path / "repeat.json").write_text(json.dumps(config))
        np.savez(path / "repeat.npz", leaf=self.leaf, item_share=self.item_share, item_mu=self.item_mu,
                 leaf_share=self.leaf_share, leaf_mu=self.leaf_mu, leaf_sigma=self.leaf_sigma,
                 leaf_observed=self.leaf_observed, leaf_buyers=self.leaf_buyers, user_pace=self.user_pace,
                 ptr=self.ptr, items=self.items, times=self.times)

    @classmethod
    def load(cls, path: Path) -> RepeatPurchaseModel:
        config = json.loads((path / "repeat.json").read_text())
        if config.get("format") != FORMAT:
            raise ValueError(f"{path}: repeat-purchase model format {config.get('format')} is not {FORMAT}")
        model = cls(**{k: config[k] for k in ("shrink_item", "shrink_user", "min_share", "min_sigma",
                                                "censor_days", "min_score")})
        model.leaf_names = list(config["leaf_names"])
        model.global_mu, model.global_sigma = config["global_mu"], config["global_sigma"]
        model.global_share = config["global_share"]
        with np.load(path / "repeat.npz", allow_pickle=False) as z:
            for name in z.files:
                setattr(model, name, z[name])
        return model


__all__ = ["Due", "RepeatPurchaseModel"]
