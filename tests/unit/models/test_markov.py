from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.models.base import QueryBatch, TrainData, Vocab
from aisle.models.markov import MarkovChain, transition_counts
from aisle.testing.toy import sequences_frame


def _data() -> TrainData:
    return TrainData.from_events(sequences_frame({"u1": ["a", "b", "c"], "u2": ["a", "b"], "u3": ["c", "a"]}))


def test_transitions_stay_within_users() -> None:
    t = transition_counts(_data()).toarray()
    a, b, c = range(3)
    expected = np.zeros((3, 3))
    expected[a, b], expected[b, c], expected[c, a] = 2, 1, 1  # no u1 -> u2 (c -> a across users) edge
    np.testing.assert_array_equal(t, expected)


def test_smoothed_next_item_probabilities() -> None:
    model = MarkovChain(smoothing=1.0, window=1).fit(_data())
    a, b, c = range(3)
    prior = np.array([3, 2, 2]) / 7
    p = model.next_item_probabilities(np.array([a, b]))
    np.testing.assert_allclose(p[0], (np.array([0, 2, 0]) + prior) / 3, rtol=1e-6)
    np.testing.assert_allclose(p[1], (np.array([0, 0, 1]) + prior) / 2, rtol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    # the last item decides under window=1; an empty history gets the prior
    np.testing.assert_allclose(model.score(QueryBatch.of_histories([[c, a]]))[0], p[0], rtol=1e-6)
    np.testing.assert_allclose(model.score(QueryBatch.of_histories([[]]))[0], prior, rtol=1e-6)
    idx, _ = model.similar(np.array([a]), 2)
    assert list(idx[0]) == [b, -1]


def test_window_mixes_recent_items_with_decay() -> None:
    model = MarkovChain(smoothing=1.0, window=2, decay=0.5).fit(_data())
    a, b = 0, 1
    p = model.next_item_probabilities(np.array([a, b]))
    mixed = model.score(QueryBatch.of_histories([[a, b]]))[0]
    np.testing.assert_allclose(mixed, (p[1] + 0.5 * p[0]) / 1.5, rtol=1e-6)


def test_two_hops_reach_the_item_after_the_next() -> None:
    # a -> b -> c and a -> b -> d: one step from a reaches only b; two steps reach c and d too, below b
    data = TrainData.from_events(sequences_frame({"u1": ["a", "b", "c"], "u2": ["a", "b", "d"]}))
    a, b, c, d = range(4)
    one, _ = MarkovChain(hops=1).fit(data).similar(np.array([a]), 3)
    assert list(one[0]) == [b, -1, -1]
    idx, val = MarkovChain(hops=2).fit(data).similar(np.array([a]), 3)
    assert list(idx[0]) == [b, c, d]
    assert val[0, 0] > val[0, 1] == val[0, 2] > 0


def test_two_hop_neighbours_after_new_events_match_a_refit() -> None:
    # the pipeline refreshes only the rows `add_events` names: with two hops that includes the predecessors of
    # an item whose successors changed (a reaches d through b once b -> d is seen)
    before = sequences_frame({"u1": ["a", "b"], "u2": ["c", "a"]})
    after = sequences_frame({"u1": ["a", "b"], "u2": ["c", "a"], "u3": ["b", "d"]})
    items, users = Vocab.of(["a", "b", "c", "d"]), Vocab.of(["u1", "u2", "u3"])
    model = MarkovChain(hops=2).fit(TrainData.from_events(before, items=items, users=users))
    data = TrainData.from_events(after, items=items, users=users)
    new = data.events.filter(pl.col("user_idx") == 2)  # u3's events: b then d
    changed = model.add_events(new)
    refit = MarkovChain(hops=2).fit(data)
    a, b = 0, 1
    assert changed is not None and {a, b} <= set(changed.tolist())
    everything = np.arange(data.n_items)
    got, want = model.similar(everything, 3), refit.similar(everything, 3)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


def test_hops_survive_save_and_load(tmp_path: Path) -> None:
    data = TrainData.from_events(sequences_frame({"u1": ["a", "b", "c"], "u2": ["a", "b", "d"]}))
    MarkovChain(hops=2).fit(data).save(tmp_path)
    idx, _ = MarkovChain.load(tmp_path).similar(np.array([0]), 3)
    assert list(idx[0]) == [1, 2, 3]


def test_hops_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="hops must be at least 1"):
        MarkovChain(hops=0)
