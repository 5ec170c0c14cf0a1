"""Off-policy evaluation: what a candidate policy's click (or purchase) rate would be, from impressions another
policy logged with its propensities.

The log is long format (`aisle.types.IMPRESSION_SCHEMA`: one row per shown item, with the probability that the
logging policy put that item at that position) plus a reward per row. The candidate is a table of its own
probabilities, `(request_id, position, item_id, probability)` for the requests in the log (what
`aisle.simulate.Policy.probabilities` returns). Rewards are taken position by position (the standard slot-wise
estimators of the Open Bandit Pipeline), and the value is the reward per shown item, which is what a click rate
is. With w = target probability / logged propensity of a row:

* IPS: mean of w * r over rows: unbiased when every item the candidate shows had a logging propensity > 0;
* SNIPS: sum(w * r) / sum(w): a little bias, much less variance when weights are large;
* DR: mean of [sum over items a of target(a) * q(a)] + w * (r - q(logged item)), with q a reward model
  (per item and position click rate, shrunk to the position's rate, cross-fitted on two halves of the requests
  so no row is predicted by a model that saw it): unbiased if either the propensities or q are right;
* DM: the reward model alone (biased when q is; shown for comparison).

Intervals are percentile bootstraps over requests (the rows of one list are not independent), so they say how
much the estimate would move with another log of the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from aisle.types import EventType

ESTIMATORS: tuple[str, ...] = ("IPS", "SNIPS", "DR", "DM")


@dataclass(frozen=True, slots=True)
class Estimate:
    estimator: str
    value: float
    low: float
    high: float

    def contains(self, truth: float) -> bool:
        return self.low <= truth <= self.high


@dataclass(frozen=True)
class OPEResult:
    estimates: tuple[Estimate, ...]
    logged_value: float  # the logging policy's own reward per shown item
    rows: int
    requests: int
    matched_rows: int  # rows where the candidate could have shown the logged item (w > 0)
    max_weight: float
    effective_sample_size: float  # (sum w)^2 / sum w^2
    confidence: float

    def __getitem__(self, estimator: str) -> Estimate:
        for e in self.estimates:
            if e.estimator == estimator:
                return e
        raise KeyError(f"no estimator {estimator!r}; have {', '.join(e.estimator for e in self.estimates)}")

    def to_dict(self) -> dict[str, object]:
        return {"estimates": {e.estimator: {"value": e.value, "low": e.low, "high": e.high} for e in self.estimates},
                "logged_value": self.logged_value, "rows": self.rows, "requests": self.requests,
                "matched_rows": self.matched_rows, "max_weight": self.max_weight,
                "effective_sample_size": self.effective_sample_size, "confidence": self.confidence}

    def table(self, name: str = "candidate", truth: float | None = None) -> str:
        pct = f"{self.confidence:.0%}"
        head = f"{'estimator':<10}{'value':>10}  {pct + ' interval':<22}"
        lines = [f"Off-policy estimate of {name}'s reward per shown item from {self.rows:,} logged rows "
                 f"({self.requests:,} lists; logging policy's own value {self.logged_value:.5f})",
                 head + ("contains truth" if truth is not None else "")]
        for e in self.estimates:
            row = f"{e.estimator:<10}{e.value:>10.5f}  {f'[{e.low:.5f}, {e.high:.5f}]':<22}"
            if truth is not None:
                row += "yes" if e.contains(truth) else "no"
            lines.append(row)
        lines.append(f"rows the candidate could have shown: {self.matched_rows:,}; max weight {self.max_weight:,.1f}; "
                     f"effective sample size {self.effective_sample_size:,.1f}")
        if truth is not None:
            lines.append(f"truth: {truth:.5f}")
        return "\n".join(lines) + "\n"


def read_open_bandit(folder: str | Path) -> pl.DataFrame:
    """A log of the Open Bandit Dataset (`all.csv.gz` of one policy's folder: one row per round, the shown item,
    its slot, the click and the logging propensity) as an `estimate` log, each round its own request."""
    path = Path(folder) / "all.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no Open Bandit log here (expected FOLDER/all.csv.gz)")
    df = pl.read_csv(path, columns=["item_id", "position", "click", "propensity_score"])
    return df.with_row_index("n").select(pl.col("n").cast(pl.String).alias("request_id"),
                                         pl.col("position").cast(pl.Int32), pl.col("item_id").cast(pl.String),
                                         pl.col("propensity_score").cast(pl.Float64).alias("propensity"),
                                         pl.col("click").cast(pl.Float64).alias("reward"))


def attach_rewards(impressions: pl.DataFrame, events: pl.DataFrame, reward: str = "click") -> pl.DataFrame:
    """The impressions with a 0/1 `reward` column: did an event of type `reward` (click, add_to_cart, purchase)
    follow for that item from that list (matched by the event's request_id)?"""
    if reward not in {EventType.CLICK.value, EventType.ADD_TO_CART.value, EventType.PURCHASE.value}:
        raise ValueError(f"reward must be click, add_to_cart or purchase, not {reward!r}")
    if "request_id" not in events.columns:
        raise ValueError("events lack column request_id: rewards are matched to the list that showed the item")
    hits = (events.filter(pl.col("event_type") == reward).select("request_id", "item_id").drop_nulls()
            .unique().with_columns(pl.lit(1.0).alias("reward")))
    return impressions.join(hits, on=["request_id", "item_id"], how="left").with_columns(
        pl.col("reward").fill_null(0.0))


def estimate(log: pl.DataFrame, target: pl.DataFrame, *, confidence: float = 0.95, n_boot: int = 1000,
             seed: int = 0, prior_strength: float = 20.0, reward_model: pl.DataFrame | None = None) -> OPEResult:
    """IPS, SNIPS, DR and DM estimates with bootstrap intervals.

    `log`: request_id, position, item_id, propensity (> 0), reward. `target`: request_id, position, item_id,
    probability (rows with probability 0 may be left out). `reward_model` (item_id, position, q) replaces the
    built-in cross-fitted per item and position rates as DR's and DM's q (an item it lacks gets 0)."""
    need = {"request_id", "position", "item_id", "propensity", "reward"}
    missing = sorted(need - set(log.columns))
    if missing:
        raise ValueError(f"the log lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if log.height == 0:
        raise ValueError("the log is empty")
    bad = log.filter(pl.col("propensity").is_null() | (pl.col("propensity") <= 0) | (pl.col("propensity") > 1))
    if bad.height:
        raise ValueError(f"{bad.height:,} logged rows have a propensity outside (0, 1] (first: request "
                         f"{bad['request_id'][0]!r}); off-policy estimates need the logging policy's probabilities")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), not {confidence}")
    log = log.select("request_id", pl.col("position").cast(pl.Int32), "item_id",
                     pl.col("propensity").cast(pl.Float64), pl.col("reward").cast(pl.Float64))
    target = target.select("request_id", pl.col("position").cast(pl.Int32), "item_id",
                           pl.col("probability").cast(pl.Float64)).filter(pl.col("probability") > 0)
    req = log.select("request_id").unique(maintain_order=True).with_row_index("req")
    fold = (req["req"].to_numpy() % 2)  # two halves of the requests, for cross-fitting the reward model
    req = req.with_columns(pl.Series("fold", fold, dtype=pl.Int8))
    log = log.join(req, on="request_id")
    target = target.join(req, on="request_id")
    q_logged, dm = _cross_fit(log, target, prior_strength, reward_model)
    rows = (log.join(target.select("request_id", "position", "item_id", "probability"),
                     on=["request_id", "position", "item_id"], how="left")
            .with_columns(pl.col("probability").fill_null(0.0)))
    rows = (rows.join(q_logged, on=["req", "position", "item_id"], how="left")
            .join(dm, on=["req", "position"], how="left")
            .with_columns(pl.col("q").fill_null(0.0), pl.col("dm").fill_null(0.0)))
    w = (rows["probability"] / rows["propensity"]).to_numpy()
    r = rows["reward"].to_numpy()
    qv, dmv = rows["q"].to_numpy(), rows["dm"].to_numpy()
    ridx = rows["req"].to_numpy().astype(np.int64)
    n_req = req.height
    sums = np.stack([np.bincount(ridx, x, n_req) for x in (w * r, w, dmv + w * (r - qv), dmv, np.ones(len(w)))])
    point = _stats(sums[:, None, :].sum(axis=2))[:, 0]
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_boot, 200):
        counts = rng.poisson(1.0, size=(min(200, n_boot - start), n_req)).astype(np.float64)
        boots.append(_stats(sums @ counts.T))
    reps = np.concatenate(boots, axis=1)
    a = (1 - confidence) / 2
    lo, hi = np.nanquantile(reps, a, axis=1), np.nanquantile(reps, 1 - a, axis=1)
    ests = tuple(Estimate(name, float(point[i]), float(lo[i]), float(hi[i])) for i, name in enumerate(ESTIMATORS))
    return OPEResult(ests, float(r.mean()), len(r), n_req, int((w > 0).sum()), float(w.max()),
                     float(w.sum() ** 2 / (w * w).sum()) if (w > 0).any() else 0.0, confidence)


def _stats(s: np.ndarray) -> np.ndarray:
    """(4, B) estimates from (5, B) totals: sum w r, sum w, sum dr terms, sum dm, rows."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([s[0] / s[4], np.where(s[1] > 0, s[0] / s[1], 0.0), s[2] / s[4], s[3] / s[4]])


def _cross_fit(log: pl.DataFrame, target: pl.DataFrame, strength: float, fixed: pl.DataFrame | None
               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per (item, position) reward rates fitted on one half of the requests and applied to the other:
    q for every logged row, and the direct-method term (sum of target probability times q) per list position."""
    qs, dms = [], []
    for f in (0, 1):
        train = log.filter(pl.col("fold") != f)
        pos = train.group_by("position").agg(pl.col("reward").mean().alias("p0"))
        cell = train.group_by("item_id", "position").agg(pl.col("reward").sum().alias("s"), pl.len().alias("n"))
        if fixed is not None:  # q = (0 + 0 * p0) / (0 + 1) + q: the given model, unsmoothed
            cell = fixed.select("item_id", pl.col("position").cast(pl.Int32), pl.col("q").alias("s"),
                                pl.lit(1).alias("n"))
            pos = pos.with_columns(pl.lit(0.0).alias("p0"))
        apply = log.filter(pl.col("fold") == f).select("req", "position", "item_id")
        qs.append(_predict(apply, cell, pos, 0.0 if fixed is not None else strength))
        tgt = target.filter(pl.col("fold") == f)
        pred = _predict(tgt.select("req", "position", "item_id"), cell, pos, 0.0 if fixed is not None else strength)
        dms.append(tgt.select("req", "position", "item_id", "probability")
                   .join(pred, on=["req", "position", "item_id"])
                   .group_by("req", "position").agg((pl.col("probability") * pl.col("q")).sum().alias("dm")))
    return pl.concat(qs).unique(["req", "position", "item_id"]), pl.concat(dms)


def _predict(rows: pl.DataFrame, cell: pl.DataFrame, pos: pl.DataFrame, strength: float) -> pl.DataFrame:
    return (rows.join(cell, on=["item_id", "position"], how="left").join(pos, on="position", how="left")
            .with_columns(pl.col("p0").fill_null(0.0), pl.col("s").fill_null(0.0), pl.col("n").fill_null(0))
            .select("req", "position", "item_id",
                    ((pl.col("s") + strength * pl.col("p0")) / (pl.col("n") + strength)).fill_nan(0.0).alias("q")))


__all__ = ["ESTIMATORS", "Estimate", "OPEResult", "attach_rewards", "estimate", "read_open_bandit"]
