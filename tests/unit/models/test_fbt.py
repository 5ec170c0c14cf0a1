from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from aisle.models.base import QueryBatch, TrainData
from aisle.models.fbt import FrequentlyBoughtTogether, baskets
from aisle.testing.toy import T0, sequences_frame


def _data() -> TrainData:
    # four baskets (one per user): {a,b}, {a,b,c}, {a,c}, {d}
    return TrainData.from_events(sequences_frame({"u1": ["a", "b"], "u2": ["a", "b", "c"], "u3": ["a", "c"],
                                                  "u4": ["d"]}))


def test_support_confidence_lift_by_hand() -> None:
    model = FrequentlyBoughtTogether(min_count=1, min_lift=0.0).fit(_data())
    pairs = model.pairs()
    ab = pairs.filter((pl.col("item_a") == "a") & (pl.col("item_b") == "b")).row(0, named=True)
    assert ab["count"] == 2
    assert ab["support"] == pytest.approx(2 / 4)
    assert ab["confidence"] == pytest.approx(2 / 3)  # a in 3 baskets, with b in 2
    assert ab["lift"] == pytest.approx((2 / 3) / (2 / 4))
    ba = pairs.filter((pl.col("item_a") == "b") & (pl.col("item_b") == "a")).row(0, named=True)
    assert ba["confidence"] == pytest.approx(1.0) and ba["lift"] == pytest.approx(1 / (3 / 4))
    assert pairs.filter(pl.col("item_a") == "d").is_empty()
    assert set(pairs.columns) >= {"item_a", "item_b", "support", "confidence", "lift", "count"}


def test_thresholds_filter_rules() -> None:
    data = _data()
    frequent = FrequentlyBoughtTogether(min_count=2, min_lift=0.0).fit(data).pairs()
    assert set(zip(frequent["item_a"], frequent["item_b"], strict=True)) == {("a", "b"), ("b", "a"), ("a", "c"),
                                                                            ("c", "a")}  # b-c: one basket only
    strict = FrequentlyBoughtTogether(min_count=1, min_confidence=0.9, min_lift=0.0).fit(data).pairs()
    assert set(zip(strict["item_a"], strict["item_b"], strict=True)) == {("b", "a"), ("c", "a")}
    lifted = FrequentlyBoughtTogether(min_count=1, min_lift=1.2).fit(data).pairs()
    assert lifted.height and (lifted["lift"] >= 1.2).all()


def test_baskets_split_on_time_gaps_and_prefer_purchases() -> None:
    buys = sequences_frame({"u": ["a", "b"]})
    later = sequences_frame({"u": ["c"]}, start=T0 + timedelta(hours=30))
    views = sequences_frame({"u": ["z"]}, event_type="view")
    data = TrainData.from_events(pl.concat([buys, later, views]))
    b = baskets(data, ("purchase",), window_hours=24.0).toarray()
    names = data.items.decode(range(data.n_items))
    assert sorted(sorted(names[i] for i in np.flatnonzero(row)) for row in b) == [["a", "b"], ["c"]]
    only_views = TrainData.from_events(sequences_frame({"u": ["x", "y"]}, event_type="view"))
    assert baskets(only_views, ("purchase",), 24.0).shape[0] == 1  # falls back to all events


def test_score_and_similar_are_bought_together() -> None:
    model = FrequentlyBoughtTogether(min_count=1, min_lift=0.0).fit(_data())
    a, b, c, d = range(4)
    s = model.score(QueryBatch.of_histories([[b]]))[0]
    assert s[a] > s[c] > s[d]  # b -> a (conf 1), b -> c (conf 1/2), d: popularity tie-breaker only
    idx, val = model.similar(np.array([a, d]), 3)
    assert list(idx[0]) == [b, c, -1] and list(idx[1]) == [-1, -1, -1]
    assert val[0, 0] == pytest.approx(2 / 3)
