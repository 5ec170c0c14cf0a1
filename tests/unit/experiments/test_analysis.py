"""The experiment report: attribution, hand-checked statistics, a planted lift found, an A/A run left alone."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from aisle.experiments.analysis import report
from aisle.types import EVENT_SCHEMA, IMPRESSION_SCHEMA, conform

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _impressions(rows: list[dict]) -> pl.DataFrame:
    return conform(pl.DataFrame([{"timestamp": T0, "position": 1, **r} for r in rows]), IMPRESSION_SCHEMA)


def _events(rows: list[dict]) -> pl.DataFrame:
    frame = pl.DataFrame([{"timestamp": T0, **r} for r in rows])
    return conform(frame, {**EVENT_SCHEMA, "request_id": pl.String()})


def _bernoulli_run(n_per_arm: int, rates: dict[str, float], seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One list per session; a purchase (with its click and cart) with the arm's probability."""
    rng = np.random.default_rng(seed)
    imp_parts, ev_parts = [], []
    for arm, rate in rates.items():
        sessions = [f"{arm}-s{i}" for i in range(n_per_arm)]
        imp_parts.append(pl.DataFrame({"request_id": [f"r-{s}" for s in sessions], "session_id": sessions,
                                       "user_id": sessions, "item_id": "i1", "arm": arm}))
        bought = [s for s, b in zip(sessions, rng.random(n_per_arm) < rate, strict=True) if b]
        for etype in ("click", "add_to_cart", "purchase"):
            ev_parts.append(pl.DataFrame({"request_id": [f"r-{s}" for s in bought], "session_id": bought,
                                          "user_id": bought, "item_id": "i1", "event_type": etype,
                                          "value": 1.0}, schema_overrides={"value": pl.Float64}))
    imp = conform(pl.concat(imp_parts).with_columns(pl.lit(T0).alias("timestamp"), pl.lit(1).alias("position")),
                  IMPRESSION_SCHEMA)
    ev = conform(pl.concat(ev_parts).with_columns(pl.lit(T0).alias("timestamp")),
                 {**EVENT_SCHEMA, "request_id": pl.String()})
    return imp, ev


def test_events_reach_sessions_by_request_then_session_and_nothing_is_lost_silently() -> None:
    imp = _impressions([
        {"request_id": "r1", "session_id": "s1", "user_id": "u1", "item_id": "a", "arm": "control"},
        {"request_id": "r1", "session_id": "s1", "user_id": "u1", "item_id": "b", "arm": "control"},
        {"request_id": "r2", "session_id": "s2", "user_id": "u2", "item_id": "a", "arm": "B"},
        {"request_id": "r3", "session_id": None, "user_id": "u3", "item_id": "a", "arm": "B"},  # keyed by user
        {"request_id": "r4", "session_id": "s4", "user_id": "u4", "item_id": "a", "arm": "control"},
        {"request_id": "r5", "session_id": "s4", "user_id": "u4", "item_id": "a", "arm": "B"},  # s4 in two arms
        {"request_id": "r6", "session_id": "s6", "user_id": "u6", "item_id": "a", "arm": None},  # no experiment
    ])
    ev = _events([
        {"request_id": "r1", "session_id": "other", "user_id": "u1", "item_id": "a", "event_type": "click"},
        {"request_id": None, "session_id": "s2", "user_id": "u2", "item_id": "a", "event_type": "add_to_cart"},
        {"request_id": None, "session_id": "s2", "user_id": "u2", "item_id": "a", "event_type": "purchase",
         "value": 2.0},
        {"request_id": None, "session_id": None, "user_id": "u3", "item_id": "a", "event_type": "click"},
        {"request_id": "r4", "session_id": "s4", "user_id": "u4", "item_id": "a", "event_type": "click"},
        {"request_id": None, "session_id": "zz", "user_id": "u9", "item_id": "a", "event_type": "purchase"},
        {"request_id": None, "session_id": "s1", "user_id": "u1", "item_id": "a", "event_type": "view"},
    ])
    prices = pl.DataFrame({"item_id": ["a", "b"], "price": [10.0, 99.0]})
    rep = report(imp, ev, prices=prices)
    assert rep.control == "control"
    ctrl, b = rep.arm("control"), rep.arm("B")
    assert (ctrl.sessions, ctrl.impressions) == (1, 2)
    assert (b.sessions, b.impressions) == (2, 2)
    assert ctrl.metrics["click_rate"].value == 1.0  # by request r1, although its session_id differs
    assert b.metrics["click_rate"].value == 0.5  # u3's click, keyed by user
    assert b.metrics["cart_rate"].value == 0.5 and b.metrics["conversion"].value == 0.5
    assert b.metrics["revenue"].value == pytest.approx(10.0)  # 2 x 10.0 over 2 sessions
    assert rep.counts["sessions_in_several_arms"] == 1
    assert rep.counts["impressions_outside_experiments"] == 1
    assert rep.counts["events_not_attributed"] == 2  # s4's click (its session is in two arms) and u9's purchase
    d = rep.to_dict()
    assert d["control"] == "control" and d["revenue"] == "quantity x price"
    assert [a["arm"] for a in d["arms"]] == ["B", "control"]
    text = rep.table()
    assert "conversion" in text and "sessions in several arms 1" in text


def test_statistics_match_the_textbook_formulas() -> None:
    # control: 40 of 200 sessions bought; B: 60 of 200
    imp = _impressions([{"request_id": f"r{a}{i}", "session_id": f"{a}{i}", "user_id": f"{a}{i}", "item_id": "x",
                         "arm": a} for a in ("control", "B") for i in range(200)])
    ev = _events([{"request_id": f"r{a}{i}", "session_id": f"{a}{i}", "user_id": f"{a}{i}", "item_id": "x",
                   "event_type": "purchase", "value": 3.0}
                  for a, k in (("control", 40), ("B", 60)) for i in range(k)])
    rep = report(imp, ev, confidence=0.95)
    z = 1.959963984540054
    c = rep.arm("control").metrics["conversion"]
    p, n = 0.2, 200
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (c.value, c.low, c.high) == pytest.approx((0.2, centre - half, centre + half))
    cmp = rep.arm("B").vs_control["conversion"]
    pooled = 100 / 400
    zstat = 0.1 / math.sqrt(pooled * (1 - pooled) * (2 / 200))
    assert cmp.p_value == pytest.approx(math.erfc(zstat / math.sqrt(2)))
    se = math.sqrt(0.3 * 0.7 / 200 + 0.2 * 0.8 / 200)
    assert (cmp.diff, cmp.low, cmp.high) == pytest.approx((0.1, 0.1 - z * se, 0.1 + z * se))
    assert cmp.lift == pytest.approx(0.5) and cmp.significant
    assert rep.arm("B").metrics["revenue"].value == pytest.approx(0.9)  # purchase values without prices
    assert rep.arm("control").metrics["click_rate"].value == 0.0


def test_a_planted_ten_percent_conversion_lift_is_detected() -> None:
    imp, ev = _bernoulli_run(150_000, {"control": 0.05, "treatment": 0.055}, seed=0)  # power > 99.9%
    rep = report(imp, ev, confidence=0.95)
    cmp = rep.arm("treatment").vs_control["conversion"]
    assert cmp.significant and cmp.p_value < 0.05
    assert cmp.low < 0.005 < cmp.high
    assert 0.03 < cmp.lift < 0.17


def test_a_a_runs_report_no_difference_at_the_nominal_rate() -> None:
    """Across 200 A/A runs the test calls about 5% of them significant: it is neither blind nor trigger-happy."""
    hits = 0
    for seed in range(200):
        imp, ev = _bernoulli_run(400, {"A1": 0.2, "A2": 0.2}, seed=seed)
        hits += report(imp, ev, control="A1").arm("A2").vs_control["conversion"].significant
    assert 3 <= hits <= 20  # binomial(200, 0.05): 10 expected, this range holds with > 99.5%


def test_bad_input_is_named() -> None:
    imp, ev = _bernoulli_run(5, {"control": 0.5, "B": 0.5}, seed=0)
    with pytest.raises(ValueError, match="control arm 'nope' is not in the impressions; arms: B, control"):
        report(imp, ev, control="nope")
    with pytest.raises(ValueError, match="impressions lack column arm"):
        report(imp.drop("arm"), ev)
    with pytest.raises(ValueError, match="confidence"):
        report(imp, ev, confidence=1.5)
    empty = report(imp.with_columns(pl.lit(None, dtype=pl.String).alias("arm")), ev)
    assert empty.arms == () and "no experiment arms" in empty.table()
