"""Sources that can follow new events without a refit end where a fit on all the events would: trending's decayed
counts, Markov transitions (and the neighbour rows they feed), and the pipeline's popularity."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.evaluate.protocol import item_vocab
from aisle.models.base import QueryBatch, TrainData
from aisle.models.markov import MarkovChain
from aisle.pipeline import Pipeline, PipelineConfig, SourceSpec, hold_out_last

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("markov", "markov", "i2i", window=5),
           SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def split() -> tuple[TrainData, TrainData, pl.DataFrame]:
    """(all events, the events before the last 2 days, the last 2 days with each user's previous event first)."""
    s = generate(SyntheticConfig(n_items=300, n_users=150, n_events=10_000, seed=8))
    full = TrainData.from_events(s.events, items=item_vocab(s.events, s.items), catalog=s.items)
    cut = full.events["timestamp"].max() - pl.duration(days=2)
    events = full.events.with_row_index("_r").with_columns((pl.col("timestamp") > cut).alias("is_new"))
    before = events.filter(~pl.col("is_new")).drop("_r", "is_new")
    previous = events.filter(~pl.col("is_new") & (pl.col("weight") > 0)).group_by("user_idx").agg(pl.all().last())
    fresh = pl.concat([previous.select(events.columns), events.filter(pl.col("is_new"))]).sort(["user_idx", "_r"])
    old = TrainData(users=full.users, items=full.items, events=before, catalog=full.catalog)
    return full, old, fresh.drop("_r")


def test_markov_counts_after_new_events_equal_a_fit_on_all(split: tuple[TrainData, TrainData, pl.DataFrame]) -> None:
    full, old, fresh = split
    grown = MarkovChain().fit(old)
    changed = grown.add_events(fresh)
    whole = MarkovChain().fit(full)
    assert len(changed) > 10
    assert abs(grown.transitions - whole.transitions).sum() == 0
    np.testing.assert_allclose(grown.prior, whole.prior, rtol=1e-9)
    items = np.arange(full.n_items)
    for a, b in zip(grown.similar(items, 10), whole.similar(items, 10), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_pipeline_update_follows_new_events(split: tuple[TrainData, TrainData, pl.DataFrame]) -> None:
    full, old, fresh = split
    pipe = Pipeline(PipelineConfig(sources=SOURCES, rounds=10)).fit(old)
    reference = Pipeline(PipelineConfig(sources=SOURCES, rounds=10)).fit(full)
    before = pipe.trend.copy()
    assert sorted(pipe.update(fresh)) == ["markov", "trending"]  # item-kNN needs a refit
    got, want = pipe.source("trending"), reference.source("trending")
    np.testing.assert_allclose(got.counts, want.counts, rtol=1e-6)
    np.testing.assert_allclose(pipe.trend, reference.trend, rtol=1e-5, atol=1e-7)
    assert not np.allclose(before, pipe.trend)
    np.testing.assert_allclose(pipe.popularity, reference.popularity, rtol=1e-6)
    markov, markov_ref = pipe.source("markov"), reference.source("markov")
    for item in range(0, full.n_items, 7):
        np.testing.assert_allclose(markov.neighbours(item, 20)[1], markov_ref.neighbours(item, 20)[1], rtol=1e-5)


def test_a_fit_once_source_serves_the_fit_the_combiner_learned_from(
        split: tuple[TrainData, TrainData, pl.DataFrame]) -> None:
    """`fit_once` (the deep source's nightly budget): the source is fitted on the events without each user's last
    one and kept, while the other sources are refitted on everything."""
    full, _, _ = split
    once = (SourceSpec("markov", "markov", "i2i", window=5, fit_once=True), SourceSpec("trending", "trending",
                                                                                        "trending"))
    pipe = Pipeline(PipelineConfig(sources=once, rounds=10)).fit(full)
    inner, _, _ = hold_out_last(full)
    on_inner = Pipeline(PipelineConfig(sources=SOURCES, rounds=10)).fit(inner)
    on_full = Pipeline(PipelineConfig(sources=SOURCES, rounds=10)).fit(full)
    items = range(full.n_items)
    markov = pipe.source("markov")
    assert all(np.array_equal(markov.neighbours(i, 20)[0], on_inner.source("markov").neighbours(i, 20)[0])
               for i in items)
    assert any(not np.array_equal(markov.neighbours(i, 20)[0], on_full.source("markov").neighbours(i, 20)[0])
               for i in items)
    np.testing.assert_allclose(pipe.source("trending").counts, on_full.source("trending").counts, rtol=1e-6)


def test_seed_offset_makes_a_second_fit_of_the_same_model_an_independent_one(
        split: tuple[TrainData, TrainData, pl.DataFrame]) -> None:
    """Two sources of one model (an ensemble the combiner weighs) are two fits only when their `seed_offset`s
    differ: with the same offset they score every candidate alike, with another they do not; and the offset is
    relative, so the pipeline's own seed still moves both."""
    full = split[0]

    def scores(offset: int, seed: int = 0) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], float]]:
        """Each ALS source's score of every (query, candidate) pair of 20 users."""
        sources = (SourceSpec("als", "als", "user", {"factors": 8, "iterations": 3}),
                   SourceSpec("als_b", "als", "user", {"factors": 8, "iterations": 3}, seed_offset=offset))
        pipe = Pipeline(PipelineConfig(sources=sources, rounds=5, features=("full",), seed=seed)).fit(full)
        histories = full.sequences()
        users = np.arange(20)
        cands = pipe.candidates(QueryBatch(users, [histories[u] for u in users]))
        pairs = list(zip(cands.query.tolist(), cands.item.tolist(), strict=True))
        return (dict(zip(pairs, cands.features.column("als_full").tolist(), strict=True)),
                dict(zip(pairs, cands.features.column("als_b_full").tolist(), strict=True)))

    def close(x: dict[tuple[int, int], float], y: dict[tuple[int, int], float]) -> bool:
        common = sorted(set(x) & set(y))
        assert len(common) > 100
        return bool(np.allclose([x[p] for p in common], [y[p] for p in common], rtol=1e-5))

    same_a, same_b = scores(0)
    assert close(same_a, same_b)
    other_a, other_b = scores(7)
    assert close(other_a, same_a)
    assert not close(other_a, other_b)
    moved_a, moved_b = scores(7, seed=1)
    assert not close(moved_a, other_a) and not close(moved_b, other_b)
