"""The outcome of an A/B experiment, per arm: did the treatment change what shoppers do?

The unit is the shopper session (its `session_id`, or the `user_id` where a list was served without one), because
that is what assignment is sticky on and what a store's conversion means; impressions inside one session are not
independent, so a rate per impression would understate the variance. Each exposed session is a row with four
outcomes (clicked, added to cart, bought, revenue), and each arm gets:

* the share of its sessions with a click, a cart and a purchase, with Wilson intervals (honest near 0, where
  conversion lives), and revenue per session with a normal interval on the mean;
* against the control arm: the difference with a Wald interval, the relative lift, and a two-sided p-value
  (pooled two-proportion z-test for the rates, Welch's t-test for revenue).

Events reach a session by the `request_id` of the list they came from when they carry one (the API's attribution
and the simulator's), otherwise by their `session_id` (or `user_id` for sessions keyed by user). Nothing is
dropped silently: impressions outside an experiment, sessions seen in more than one arm (a broken assignment:
their outcome belongs to neither) and events that reach no exposed session are counted in the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from aisle.types import EventType

#: The outcomes of a session, in report order: (key, label, whether it is a 0/1 outcome).
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("click_rate", "click rate", True),
    ("cart_rate", "add-to-cart rate", True),
    ("conversion", "conversion", True),
    ("revenue", "revenue / session", False),
)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A per-arm value with its interval at the report's confidence."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True, slots=True)
class Comparison:
    """One arm against the control on one metric: absolute difference (with interval), relative lift, p-value."""

    diff: float
    low: float
    high: float
    lift: float | None  # diff / control value; None when the control's value is 0
    p_value: float
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "low": self.low, "high": self.high, "lift": self.lift,
                "p_value": self.p_value, "significant": self.significant}


@dataclass(frozen=True, slots=True)
class ArmResult:
    arm: str
    sessions: int
    impressions: int
    metrics: Mapping[str, Estimate]
    vs_control: Mapping[str, Comparison] | None  # None for the control itself

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "sessions": self.sessions, "impressions": self.impressions,
                "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
                "vs_control": None if self.vs_control is None
                else {k: v.to_dict() for k, v in self.vs_control.items()}}


@dataclass(frozen=True)
class ExperimentReport:
    """Per-arm outcomes and comparisons with the control; `.table()` for people, `.to_dict()` for JSON."""

    confidence: float
    control: str | None
    arms: tuple[ArmResult, ...]
    counts: Mapping[str, int] = field(default_factory=dict)  # what was left out, and why
    revenue_from_prices: bool = False

    def arm(self, name: str) -> ArmResult:
        for a in self.arms:
            if a.arm == name:
                return a
        raise KeyError(f"no arm {name!r}; arms: {', '.join(a.arm for a in self.arms)}")

    def to_dict(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "control": self.control,
                "unit": "session", "revenue": "quantity x price" if self.revenue_from_prices else "purchase value",
                "arms": [a.to_dict() for a in self.arms], "counts": dict(self.counts)}

    def table(self) -> str:
        """A plain-text table: one block per metric, one line per arm."""
        if not self.arms:
            return "no experiment arms in the impressions (every impression has a null arm)\n"
        pct = f"{self.confidence:.0%}"
        lines = [f"Experiment report: unit = shopper session, {pct} intervals, control = {self.control}",
                 "arm".ljust(16) + "sessions".rjust(10) + "impressions".rjust(13)]
        lines += [a.arm.ljust(16) + f"{a.sessions:>10,}{a.impressions:>13,}" for a in self.arms]
        for key, label, is_rate in METRICS:
            lines.append("")
            lines.append(f"{label:<16}{'value':>10}  {pct + ' interval':<22}{'diff vs control':>16}  "
                         f"{'lift':>8}  {'p-value':>8}")
            for a in self.arms:
                e = a.metrics[key]
                fmt = _pct if is_rate else _money
                row = f"{a.arm:<16}{fmt(e.value):>10}  {'[' + fmt(e.low) + ', ' + fmt(e.high) + ']':<22}"
                if a.vs_control is not None:
                    c = a.vs_control[key]
                    lift = "-" if c.lift is None else f"{c.lift:+.1%}"
                    mark = " *" if c.significant else ""
                    row += f"{(_pct if is_rate else _money)(c.diff, sign=True):>16}  {lift:>8}  {c.p_value:>8.4f}{mark}"
                lines.append(row.rstrip())
        lines.append("")
        lines.append(f"* significant at {pct} (two-sided; not corrected for the number of metrics and arms)")
        left = {k: v for k, v in self.counts.items() if v}
        if left:
            lines.append("left out: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in left.items()))
        return "\n".join(lines) + "\n"


def report(impressions: pl.DataFrame, events: pl.DataFrame, *, confidence: float = 0.95,
           control: str | None = None, prices: pl.DataFrame | None = None) -> ExperimentReport:
    """Per-arm session outcomes with intervals, and each arm against `control` (default: the arm named
    "control", else the first arm by name).

    `impressions` has `aisle.types.IMPRESSION_SCHEMA`'s columns (arm, session_id, user_id, request_id at least),
    `events` EVENT_SCHEMA's (with `request_id` when the log has it). Revenue per session is the sum of purchase
    `value`s, or, with `prices` (item_id, price: the catalog), quantity (`value`, 1 when null) times price.
    """
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), not {confidence}")
    for name, frame, cols in (("impressions", impressions, ("arm", "session_id", "user_id", "request_id")),
                              ("events", events, ("event_type", "session_id", "user_id", "value"))):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lack column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    units, counts = _exposed_units(impressions)
    outcomes, counts["events_not_attributed"] = _outcomes(units, impressions, events, prices)
    arm_names = sorted(units["arm"].unique().to_list())
    if control is None and arm_names:
        control = "control" if "control" in arm_names else arm_names[0]
    if control is not None and arm_names and control not in arm_names:
        raise ValueError(f"control arm {control!r} is not in the impressions; arms: {', '.join(arm_names)}")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    per_arm = {a: outcomes.filter(pl.col("arm") == a) for a in arm_names}
    results = []
    for a in arm_names:
        frame = per_arm[a]
        metrics = {key: _estimate(frame[key].to_numpy(), z, is_rate) for key, _, is_rate in METRICS}
        vs = None
        if a != control:
            ctrl = per_arm[control]  # type: ignore[index]
            vs = {key: _compare(frame[key].to_numpy(), ctrl[key].to_numpy(), z, confidence, is_rate)
                  for key, _, is_rate in METRICS}
        results.append(ArmResult(a, frame.height, int(frame["impressions"].sum()), metrics, vs))
    return ExperimentReport(confidence, control, tuple(results), counts, prices is not None)


def _exposed_units(impressions: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """One row per exposed session (unit, arm, impressions); sessions in two arms are left out and counted."""
    imp = impressions.with_columns(pl.coalesce("session_id", "user_id").alias("unit"))
    outside = imp.filter(pl.col("arm").is_null() | pl.col("unit").is_null()).height
    imp = imp.filter(pl.col("arm").is_not_null() & pl.col("unit").is_not_null())
    per = imp.group_by("unit").agg(pl.col("arm").n_unique().alias("n_arms"), pl.col("arm").first(),
                                   pl.len().alias("impressions"))
    conflicted = per.filter(pl.col("n_arms") > 1).height
    units = per.filter(pl.col("n_arms") == 1).drop("n_arms")
    return units, {"impressions_outside_experiments": outside, "sessions_in_several_arms": conflicted}


def _outcomes(units: pl.DataFrame, impressions: pl.DataFrame, events: pl.DataFrame,
              prices: pl.DataFrame | None) -> tuple[pl.DataFrame, int]:
    """Each exposed unit's outcomes; events reach a unit by request_id first, else by session (or user)."""
    ev = events.select("event_type", "session_id", "user_id", "value", "item_id",
                       (pl.col("request_id") if "request_id" in events.columns
                        else pl.lit(None, dtype=pl.String)).alias("request_id"))
    ev = ev.filter(pl.col("event_type").is_in([EventType.CLICK.value, EventType.ADD_TO_CART.value,
                                               EventType.PURCHASE.value]))
    by_request = (impressions.select("request_id", pl.coalesce("session_id", "user_id").alias("unit_r"))
                  .drop_nulls().unique("request_id"))
    ev = ev.join(by_request, on="request_id", how="left")
    # a list served without a session is keyed by its user: events of that user without a request reach it too
    ev = ev.with_columns(pl.coalesce("unit_r", "session_id").alias("unit_s"), pl.col("user_id").alias("unit_u"))
    known = units.select("unit")
    ev = ev.with_columns(
        pl.when(pl.col("unit_s").is_in(known["unit"].implode())).then(pl.col("unit_s"))
        .when(pl.col("unit_r").is_null() & pl.col("unit_u").is_in(known["unit"].implode())).then(pl.col("unit_u"))
        .alias("unit"))
    lost = ev.filter(pl.col("unit").is_null()).height
    ev = ev.filter(pl.col("unit").is_not_null())
    qty = pl.col("value").fill_null(1.0)
    if prices is not None:
        ev = ev.join(prices.select("item_id", pl.col("price").cast(pl.Float64)), on="item_id", how="left")
        amount = qty * pl.col("price").fill_null(0.0)
    else:
        amount = pl.col("value").fill_null(0.0)
    per = ev.group_by("unit").agg(
        (pl.col("event_type") == EventType.CLICK.value).any().alias("click_rate"),
        (pl.col("event_type") == EventType.ADD_TO_CART.value).any().alias("cart_rate"),
        (pl.col("event_type") == EventType.PURCHASE.value).any().alias("conversion"),
        amount.filter(pl.col("event_type") == EventType.PURCHASE.value).sum().alias("revenue"))
    out = units.join(per, on="unit", how="left").with_columns(
        pl.col("click_rate", "cart_rate", "conversion").fill_null(False).cast(pl.Float64),
        pl.col("revenue").fill_null(0.0))
    return out, lost


def _estimate(x: np.ndarray, z: float, is_rate: bool) -> Estimate:
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan)
    m = float(x.mean())
    if is_rate:  # Wilson score interval
        centre = (m + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(m * (1 - m) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return Estimate(m, max(0.0, centre - half), min(1.0, centre + half))
    se = float(x.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return Estimate(m, m - z * se, m + z * se)


def _compare(x: np.ndarray, c: np.ndarray, z: float, confidence: float, is_rate: bool) -> Comparison:
    n1, n0 = len(x), len(c)
    if n1 == 0 or n0 == 0:
        return Comparison(math.nan, math.nan, math.nan, None, math.nan, False)
    m1, m0 = float(x.mean()), float(c.mean())
    diff = m1 - m0
    if is_rate:
        se = math.sqrt(m1 * (1 - m1) / n1 + m0 * (1 - m0) / n0)
        pooled = (x.sum() + c.sum()) / (n1 + n0)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        p = float(2 * stats.norm.sf(abs(diff) / se0)) if se0 > 0 else 1.0
    else:
        v1 = float(x.var(ddof=1)) if n1 > 1 else 0.0
        v0 = float(c.var(ddof=1)) if n0 > 1 else 0.0
        se = math.sqrt(v1 / n1 + v0 / n0)
        p = float(stats.ttest_ind(x, c, equal_var=False).pvalue) if se > 0 else 1.0
    lift = diff / m0 if m0 != 0 else None
    return Comparison(diff, diff - z * se, diff + z * se, lift, p, p < 1 - confidence)


def _pct(v: float, sign: bool = False) -> str:
    return "-" if math.isnan(v) else (f"{v:+.2%}" if sign else f"{v:.2%}")


def _money(v: float, sign: bool = False) -> str:
    return "-" if math.isnan(v) else (f"{v:+,.2f}" if sign else f"{v:,.2f}")


__all__ = ["METRICS", "ArmResult", "Comparison", "Estimate", "ExperimentReport", "report"]
