"""The buy-it-again model learns which items are bought again and after how long, and each shopper's pace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.models.repeat import DAY_US, RepeatPurchaseModel

T0 = datetime(2026, 1, 1, tzinfo=UTC)
COFFEE, TENT, SHAMPOO = 0, 1, 2  # leaves 0 (consumable, ~14 days), 1 (durable), 0 again


def _log(rng: np.random.Generator, n_users: int = 60) -> pl.DataFrame:
    """Coffee (item 0) every ~14 days x the shopper's pace, shampoo (item 2) every ~30, a tent (item 1) once."""
    rows = []
    for u in range(n_users):
        pace = 0.5 if u % 2 else 1.5  # odd shoppers rebuy three times as fast as even ones
        for item, gap in ((COFFEE, 14.0), (SHAMPOO, 30.0)):
            t = float(rng.uniform(0, 10))
            while t < 170:
                rows.append((u, item, T0 + timedelta(days=t)))
                t += gap * pace * float(rng.lognormal(0, 0.05))
        rows.append((u, TENT, T0 + timedelta(days=float(rng.uniform(0, 160)))))
    return pl.DataFrame(rows, schema={"user_idx": pl.Int64, "item_idx": pl.Int64,
                                      "timestamp": pl.Datetime("us", "UTC")}, orient="row")


@pytest.fixture(scope="module")
def model() -> RepeatPurchaseModel:
    return RepeatPurchaseModel().fit(_log(np.random.default_rng(0)), np.array([0, 1, 0]), ["Pantry", "Camping"], 60)


def test_repeat_shares_and_gaps_per_category(model: RepeatPurchaseModel) -> None:
    shares = {r["category"]: r for r in model.category_shares()}
    assert shares["Pantry"]["observed_share"] == 1.0 and shares["Camping"]["observed_share"] == 0.0
    assert shares["Pantry"]["learned_share"] > 0.9 and shares["Camping"]["learned_share"] < 0.1
    assert model.item_share[TENT] < model.min_share
    # the typical gap is the geometric mean over buyers (paces 0.5 and 1.5): sqrt(7 x 21) and sqrt(15 x 45) days
    assert 10 < np.exp(model.item_mu[COFFEE]) < 14 and 23 < np.exp(model.item_mu[SHAMPOO]) < 30


def test_each_shoppers_pace_is_learned(model: RepeatPurchaseModel) -> None:
    assert model.user_pace[1::2].mean() < -0.4 < 0.3 < model.user_pace[0::2].mean()


def test_a_due_consumable_is_proposed_a_durable_or_just_bought_item_never(model: RepeatPurchaseModel) -> None:
    now = int((T0 + timedelta(days=200)).timestamp() * 1e6)
    day = DAY_US
    # a new shopper: coffee bought 20 days ago (due), shampoo yesterday (not due), a tent yesterday (durable)
    items = np.array([COFFEE, SHAMPOO, TENT])
    times = np.array([now - 20 * day, now - day, now - day])
    due = model.due(items, times, now)
    assert [d.item for d in due] == [COFFEE]
    assert due[0].reason()["type"] == "buy_again" and "bought it 3 weeks ago" in due[0].reason()["text"]
    # the same coffee bought 2 days ago is not due yet
    assert model.due(np.array([COFFEE]), np.array([now - 2 * day]), now) == []
    # the shopper's own gaps count: bought every 4 days, the last 5 days ago -> due for them
    own = model.due(np.array([COFFEE] * 4), now - day * np.array([17, 13, 9, 5]), now)
    assert [d.item for d in own] == [COFFEE] and own[0].expected_days < 8


def test_a_fast_shopper_is_due_sooner(model: RepeatPurchaseModel) -> None:
    now = int((T0 + timedelta(days=200)).timestamp() * 1e6)
    items, times = np.array([SHAMPOO]), np.array([now - 20 * DAY_US])
    fast = model.due(items, times, now, user=1)
    slow = model.due(items, times, now, user=0)
    assert fast and (not slow or slow[0].score < fast[0].score)


def test_purchases_of_a_known_shopper_and_save_load(model: RepeatPurchaseModel, tmp_path: Path) -> None:
    items, times = model.purchases_of(3)
    assert len(items) > 10 and (np.diff(times) >= 0).all() and model.purchases_of(999)[0].size == 0
    model.save(tmp_path / "r")
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "r").iterdir())
    again = RepeatPurchaseModel.load(tmp_path / "r")
    now = int((T0 + timedelta(days=200)).timestamp() * 1e6)
    assert [(d.item, round(d.score, 9)) for d in again.due(items, times, now, user=3)] == \
        [(d.item, round(d.score, 9)) for d in model.due(items, times, now, user=3)]


def test_a_log_without_purchases_fits_a_model_that_proposes_nothing(tmp_path: Path) -> None:
    """MovieLens has ratings, no purchases: `aisle train` fits this model on whatever the log holds, so an empty
    purchase log must give a model that says nothing is due, not an IndexError after the pipeline's fit."""
    empty = _log(np.random.default_rng(0)).clear()
    model = RepeatPurchaseModel().fit(empty, np.array([0, 1, 0]), ["Pantry", "Camping"], 5)
    now = int((T0 + timedelta(days=200)).timestamp() * 1e6)
    assert model.purchases_of(2)[0].size == 0
    assert model.due(np.array([COFFEE, SHAMPOO]), np.array([now - 20 * DAY_US, now - 40 * DAY_US]), now) == []
    model.save(tmp_path / "r")
    assert RepeatPurchaseModel.load(tmp_path / "r").purchases_of(2)[0].size == 0
