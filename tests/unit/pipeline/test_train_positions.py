"""`train_positions`: the combiner learns from each user's last m events, each a query on the history before it,
with every one of them out of the sources' first fit, and a user's queries held out together when the combiner is
judged against the single sources."""

from __future__ import annotations

import numpy as np
import pytest

from aisle.models.base import TrainData
from aisle.pipeline import (
    Combiner,
    FeatureFrame,
    Pipeline,
    PipelineConfig,
    PipelineConfigError,
    SourceSpec,
    hold_out_last,
    hold_out_tail,
)
from aisle.pipeline.core import TrainingFrame
from tests.conftest import small_store

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i"), SourceSpec("markov", "markov", "i2i", window=5),
           SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def data() -> TrainData:
    return small_store()


def test_each_user_holds_out_its_last_events_and_keeps_two(data: TrainData) -> None:
    sequences = data.sequences()
    held = hold_out_tail(data, 4)
    kept = held.inner.sequences()
    for user, seq in enumerate(sequences):
        n_held = min(4, max(len(seq) - 2, 0))
        assert np.array_equal(kept[user], seq[: len(seq) - n_held])
        mine = np.flatnonzero(held.users == user)
        assert np.array_equal(held.targets[mine], seq[len(seq) - n_held:])
        for q in mine:  # the history of each query is everything before its target
            (history,) = held.histories(np.array([q]))
            assert np.array_equal(np.append(history, held.targets[q]), seq[: len(history) + 1])
    assert held.inner.events.height + len(held.users) == data.events.height
    assert any(len(s) <= 5 for s in sequences) and any(len(s) > 6 for s in sequences)  # both cases above ran
    inner, users, targets = hold_out_last(data)
    one = hold_out_tail(data, 1)
    assert inner.events.equals(one.inner.events) and np.array_equal(users, one.users)
    assert np.array_equal(targets, one.targets) and all(len(b) == 0 for b in one.before)


def test_the_combiner_learns_from_several_positions_per_user(data: TrainData) -> None:
    frames: dict[int, TrainingFrame] = {}
    for positions in (1, 3):
        config = PipelineConfig(sources=SOURCES, rounds=10, train_positions=positions)
        Pipeline(config).fit(data, on_training_frame=lambda t, p=positions: frames.__setitem__(p, t))
    one, three = frames[1], frames[3]
    assert len(np.unique(one.users)) == len(one.users)
    assert len(three.sizes) > 2 * len(one.sizes)
    assert np.bincount(three.users).max() == 3
    assert len(three.items) == len(three.labels) == three.sizes.sum() == len(three.frame.values)
    per_query = np.add.reduceat(three.labels, np.r_[0, np.cumsum(three.sizes)[:-1]])
    assert (per_query == 1).all()  # one target among each query's candidates


def test_a_users_queries_are_held_out_together() -> None:
    rng = np.random.default_rng(0)
    sizes = np.full(200, 20)
    labels = np.zeros(sizes.sum(), np.float32)
    labels[np.arange(200) * 20 + rng.integers(0, 20, 200)] = 1.0
    frame = FeatureFrame(("a_score", "b_score"), np.column_stack([labels + rng.normal(0, 0.5, len(labels)),
                                                                 rng.random(len(labels))]).astype(np.float32))

    def fit(owners: np.ndarray) -> Combiner:
        return Combiner(["a", "b"], rounds=5).fit(frame, labels, sizes, holdout_fraction=0.5,
                                                  rng=np.random.default_rng(1), owners=owners)

    # every query one user's: the held-out share is all of them or none, so no choice is made against the sources
    alone = fit(np.zeros(200, np.int64))
    assert alone.selection == {}
    apart = fit(np.arange(200))
    assert set(apart.selection) == {"combiner", "a", "b"}


def test_train_positions_below_one_is_an_error() -> None:
    with pytest.raises(PipelineConfigError, match="train_positions must be at least 1"):
        PipelineConfig.from_json({"train_positions": 0})
    assert PipelineConfig.from_json({"train_positions": 5}).train_positions == 5
