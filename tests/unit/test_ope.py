"""Off-policy estimators on a log small enough to check by hand, and their intervals on a known truth."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from aisle.ope import attach_rewards, estimate, read_open_bandit

LOG = pl.DataFrame({"request_id": ["r1", "r2", "r3", "r4"], "position": [1, 1, 1, 1],
                    "item_id": ["a", "b", "a", "b"], "propensity": [0.5, 0.25, 0.5, 0.5],
                    "reward": [1.0, 0.0, 0.0, 1.0]})
TARGET = pl.DataFrame({"request_id": ["r1", "r2", "r3", "r3", "r4"], "position": [1, 1, 1, 1, 1],
                       "item_id": ["a", "a", "a", "c", "b"], "probability": [1.0, 1.0, 0.5, 0.5, 1.0]})


def test_ips_snips_dr_dm_match_their_formulas() -> None:
    q = pl.DataFrame({"item_id": ["a", "b", "c"], "position": [1, 1, 1], "q": [0.5, 0.2, 0.1]})
    res = estimate(LOG, TARGET, reward_model=q, n_boot=50)
    # weights 2, 0, 1, 2
    assert res["IPS"].value == pytest.approx((2 + 0 + 0 + 2) / 4)
    assert res["SNIPS"].value == pytest.approx(4 / 5)
    # DR rows: 0.5 + 2(1 - 0.5); 0.5 + 0; (0.25 + 0.05) + 1(0 - 0.5); 0.2 + 2(1 - 0.2)
    assert res["DR"].value == pytest.approx((1.5 + 0.5 - 0.2 + 1.8) / 4)
    assert res["DM"].value == pytest.approx((0.5 + 0.5 + 0.3 + 0.2) / 4)
    assert res.matched_rows == 3 and res.max_weight == 2.0 and res.logged_value == 0.5
    assert res.effective_sample_size == pytest.approx(25 / 9)
    for e in res.estimates:
        assert e.low <= e.value <= e.high or e.estimator == "SNIPS"


def test_bad_logs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="propensity outside"):
        estimate(LOG.with_columns(pl.lit(0.0).alias("propensity")), TARGET)
    with pytest.raises(ValueError, match="lacks column propensity"):
        estimate(LOG.drop("propensity"), TARGET)


def test_rewards_follow_the_list_that_showed_the_item() -> None:
    imp = LOG.drop("reward")
    ev = pl.DataFrame({"request_id": ["r1", "r2", "zz"], "item_id": ["a", "a", "b"],
                       "event_type": ["click", "click", "click"]})
    got = attach_rewards(imp, ev).sort("request_id")
    assert got["reward"].to_list() == [1.0, 0.0, 0.0, 0.0]  # r2 clicked a, but a was not on r2's list


def test_intervals_cover_a_known_truth_on_a_uniform_log() -> None:
    """A uniformly random 20-item log; the candidate always shows item 0, whose click rate is 0.3."""
    covered = {"SNIPS": 0, "DR": 0}
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n = 4000
        item = rng.integers(0, 20, n)
        click = rng.random(n) < np.where(item == 0, 0.3, 0.05)
        log = pl.DataFrame({"request_id": [f"r{i}" for i in range(n)], "position": 1,
                            "item_id": [f"i{j}" for j in item], "propensity": 1 / 20, "reward": click * 1.0})
        target = pl.DataFrame({"request_id": [f"r{i}" for i in range(n)], "position": 1, "item_id": "i0",
                               "probability": 1.0})
        res = estimate(log, target, n_boot=300, seed=seed)
        for k in covered:
            covered[k] += res[k].contains(0.3)
    assert covered["SNIPS"] >= 25 and covered["DR"] >= 25  # 95% nominal: 28.5 of 30 expected


@pytest.mark.realdata
def test_open_bandit_thompson_sampling_estimated_from_the_random_log() -> None:
    """Real logs: Thompson sampling's click rate, estimated from the uniform-random log, has intervals that hold
    its on-policy click rate (0.0042 over 10,000 rounds)."""
    from tests.conftest import shared_path

    root = shared_path("open-bandit-dataset-sample")
    random_log, bts = read_open_bandit(root / "random"), read_open_bandit(root / "bts")
    assert random_log.height == 10_000 and random_log["propensity"].n_unique() == 1
    freq = (bts.group_by("position", "item_id").len()
            .with_columns((pl.col("len") / pl.col("len").sum().over("position")).alias("probability")))
    target = random_log.select("request_id", "position").join(freq.drop("len"), on="position")
    res = estimate(random_log, target, n_boot=500)
    truth = float(bts["reward"].mean())
    for name in ("IPS", "SNIPS", "DR"):
        assert res[name].contains(truth), res.table("bts", truth)
    assert res.matched_rows > 9_000
