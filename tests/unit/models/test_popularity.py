from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, TrainData, recommend
from aisle.models.popularity import Popularity, Trending
from aisle.testing.toy import T0, sequences_frame


def test_pop_counts_and_ties_by_index() -> None:
    data = TrainData.from_events(sequences_frame({"a": ["x", "y", "z"], "b": ["z", "y"], "c": ["w"]}))
    model = Popularity().fit(data)
    order = data.items.decode(recommend(model.score(QueryBatch.of_histories([[]])), 4)[0][0])
    assert order == ["y", "z", "x", "w"]  # y and z tie at 2: y was seen first (lower index)


def test_pop_weighted_uses_event_weights() -> None:
    views = sequences_frame({"a": ["x"], "b": ["x"], "c": ["x"]}, event_type="view")
    buys = sequences_frame({"d": ["y"]}, event_type="purchase")
    data = TrainData.from_events(pl.concat([views, buys]))
    plain, weighted = Popularity().fit(data), Popularity(weighted=True).fit(data)
    assert list(plain.counts) == [3, 1] and list(weighted.counts) == [3, 5]
    assert plain.score(QueryBatch.of_histories([[]]))[0].argmax() == 0
    assert weighted.score(QueryBatch.of_histories([[]]))[0].argmax() == 1


def test_trending_decays_with_half_life() -> None:
    old = sequences_frame({f"o{i}": ["old"] for i in range(3)}, start=T0)
    new = sequences_frame({f"n{i}": ["new"] for i in range(2)}, start=T0 + timedelta(days=14))
    data = TrainData.from_events(pl.concat([old, new]))
    slow, fast = Trending(half_life_days=1000.0).fit(data), Trending(half_life_days=7.0).fit(data)
    old_i, new_i = data.items.index["old"], data.items.index["new"]
    assert slow.counts[old_i] > slow.counts[new_i]  # almost no decay: 3 old events beat 2 new ones
    np.testing.assert_allclose(fast.counts[[old_i, new_i]], [3 * 0.25, 2.0], rtol=1e-6)  # two half-lives old
    assert fast.score(QueryBatch.of_histories([[]]))[0].argmax() == new_i
