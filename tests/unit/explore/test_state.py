"""The exploration state: what counts as an impression and a reward, each once, and that it survives a bundle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.explore import N_FEATURES, ExploreState
from aisle.types import IMPRESSION_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _context(users: list[str | None], items: list[str], times: pl.Series) -> np.ndarray:
    x = np.zeros((len(items), N_FEATURES))
    x[:, 0] = 1.0
    x[:, 1] = [float(i == "new1") for i in items]
    return x


def _imp(rid: str, items: list[str], *, at: datetime = T0, surface: str = "recommendations") -> pl.DataFrame:
    n = len(items)
    return pl.DataFrame({"request_id": [rid] * n, "timestamp": [at] * n, "user_id": ["u"] * n,
                         "session_id": ["s"] * n, "surface": [surface] * n, "item_id": items,
                         "position": list(range(1, n + 1)), "score": [None] * n, "propensity": [0.5] * n,
                         "model_version": ["v"] * n, "arm": [None] * n, "query": [None] * n}, schema=IMPRESSION_SCHEMA)


def _ev(rid: str | None, item: str, kind: str = "click", at: datetime = T0) -> pl.DataFrame:
    return pl.DataFrame({"user_id": ["u"], "item_id": [item], "event_type": [kind], "request_id": [rid],
                         "timestamp": [at + timedelta(seconds=5)]},
                        schema={"user_id": pl.String, "item_id": pl.String, "event_type": pl.String,
                                "request_id": pl.String, "timestamp": pl.Datetime("us", "UTC")})


def _update(state: ExploreState, imp: pl.DataFrame, ev: pl.DataFrame, **kw: object) -> ExploreState:
    return state.update(imp, ev, context=_context, cold=["new1", "new2"], **kw)  # type: ignore[arg-type]


def test_cold_items_of_recommendation_lists_count_and_each_click_counts_once() -> None:
    lists = pl.concat([_imp("r1", ["old", "new1", "new2"]), _imp("q1", ["new1"], surface="search")])
    s = _update(ExploreState(), lists,
                pl.concat([_ev("r1", "new1"), _ev("r1", "new1"), _ev("r1", "old"), _ev(None, "new2"),
                           _ev("r1", "new2", "purchase")]))
    assert s.item_ids == ("new1", "new2")  # not the warm item, not the search list
    shown, rewards = s.counts(["new1", "new2", "old"])
    assert rewards.tolist() == [1.0, 0.0, 0.0]  # a repeated click once; no request id, a purchase: not clicks
    weights = s.examination(np.array([2, 3]))
    assert shown[:2] == pytest.approx(weights) and shown[2] == 0
    assert np.allclose(s.b, _context([None], ["new1"], pl.Series([]))[0])
    # the same impressions read again (the worker reads a minute back) and a click posted again: nothing changes
    again = _update(s, _imp("r1", ["old", "new1", "new2"]), _ev("r1", "new1"))
    assert again.counts(["new1", "new2"])[0] == pytest.approx(shown[:2])
    assert again.counts(["new1"])[1].tolist() == [1.0]
    # a purchase reward counts purchases instead
    bought = _update(ExploreState(), _imp("r1", ["new2"]), _ev("r1", "new2", "purchase"), reward="purchase")
    assert bought.counts(["new2"])[1].tolist() == [1.0]


def test_a_click_that_arrives_before_its_impression_is_kept_until_it_can_count() -> None:
    s = _update(ExploreState(), _imp("r0", ["new2"]), _ev("r1", "new1"))
    assert s.counts(["new1"])[1].tolist() == [0.0] and s.orphans.height == 1
    s = _update(s, _imp("r1", ["new1"]), _ev("r0", "x", "view"))
    assert s.counts(["new1"])[1].tolist() == [1.0] and s.orphans.is_empty()


def test_old_impressions_and_orphans_leave_after_the_attribution_window() -> None:
    s = _update(ExploreState(), _imp("r1", ["new1"]), _ev("rX", "new2"), attribution_seconds=60)
    later = T0 + timedelta(minutes=10)
    s = _update(s, _imp("r2", ["new2"], at=later), _ev("r1", "new1", at=later), attribution_seconds=60)
    assert s.pending["request_id"].to_list() == ["r2"] and s.orphans.is_empty()
    assert s.counts(["new1"])[1].tolist() == [0.0]  # ten minutes after its impression: too late to count
    assert s.impressions_until == int(later.timestamp() * 1_000_000)


def test_the_position_curve_is_learned_from_clicks_by_position() -> None:
    s = ExploreState()
    assert s.examination(np.array([1, 2, 4])) == pytest.approx([1.0, 0.5, 0.25])  # the prior: 1 / position
    curve = ExploreState(position_shown=np.r_[[10_000.0, 10_000.0], np.zeros(98)],
                         position_rewards=np.r_[[1_000.0, 800.0], np.zeros(98)]).examination(np.array([1, 2]))
    assert curve[0] == 1.0 and 0.75 < curve[1] < 0.8  # clicks at 2 are 80% of those at 1, shrunk towards 1/2


def test_the_state_survives_a_save_and_load(tmp_path: Path) -> None:
    s = _update(ExploreState(), _imp("r1", ["new1", "new2"]), _ev("r1", "new2"))
    s.save(tmp_path / "explore")
    back = ExploreState.load(tmp_path / "explore")
    assert back.item_ids == s.item_ids and back.updates == s.updates == 1
    for name in ("shown", "rewards", "a", "b", "position_shown", "position_rewards"):
        assert np.array_equal(getattr(back, name), getattr(s, name)), name
    assert back.pending.equals(s.pending) and back.impressions_until == s.impressions_until
