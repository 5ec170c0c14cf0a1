"""The pipeline: a Recommender that merges sources, learns a combiner without leakage, persists, and ranks the
same offline (batch) and online (one request)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.models.base import QueryBatch, TrainData
from aisle.pipeline import Pipeline, PipelineConfig, SourceSpec, hold_out_last
from tests.conftest import small_store

SOURCES = (SourceSpec("als", "als", "user", {"factors": 16, "iterations": 4}),
           SourceSpec("itemknn", "itemknn", "i2i", decay=0.7),
           SourceSpec("markov", "markov", "i2i", window=5, decay=0.5),
           SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def data() -> TrainData:
    return small_store()


@pytest.fixture(scope="module")
def pipe(data: TrainData) -> Pipeline:
    return Pipeline(PipelineConfig(sources=SOURCES, rounds=20)).fit(data)


def test_hold_out_last_leaves_each_users_last_event_out(data: TrainData) -> None:
    inner, users, targets = hold_out_last(data)
    assert inner.events.height == data.events.height - len(users)
    last = data.events.filter(pl.col("weight") > 0).group_by("user_idx", maintain_order=True).last()
    expect = dict(zip(last["user_idx"].to_list(), last["item_idx"].to_list(), strict=True))
    assert all(expect[u] == t for u, t in zip(users.tolist(), targets.tolist(), strict=True))


def test_scores_rank_candidates_first_and_exclude_nothing_else(pipe: Pipeline, data: TrainData) -> None:
    seqs = data.sequences()
    batch = QueryBatch(np.arange(5), [seqs[u] for u in range(5)])
    s = pipe.score(batch)
    assert s.shape == (5, data.n_items) and np.isfinite(s).all()
    c = pipe.candidates(batch)
    for q in range(5):
        cand = c.item[c.query == q]
        assert not set(cand.tolist()) & set(seqs[q].tolist())  # history excluded from candidates
        others = np.setdiff1d(np.arange(data.n_items), cand)
        assert s[q, cand].min() > s[q, others].max()
    assert pipe.ranker in ("combiner", *pipe.source_keys) and "combiner" in pipe.selection


def test_save_load_gives_the_same_scores(pipe: Pipeline, data: TrainData, tmp_path: Path) -> None:
    pipe.save(tmp_path / "p")
    back = Pipeline.load(tmp_path / "p")
    seqs = data.sequences()
    batch = QueryBatch(np.arange(10), [seqs[u] for u in range(10)])
    np.testing.assert_allclose(back.score(batch), pipe.score(batch), rtol=1e-5, atol=1e-5)
    assert not list((tmp_path / "p").rglob("*.pkl"))


def test_precomputed_lists_equal_the_online_ranking(pipe: Pipeline, data: TrainData) -> None:
    rows = pipe.precompute(data)
    ranked = pipe.ranked(data, rows, n=10)
    seqs = data.sequences()
    for u in (0, 7, 42):
        c = pipe.candidates(QueryBatch(np.array([u]), [seqs[u]]),
                            precomputed={k: (v[0][u:u + 1], v[1][u:u + 1]) for k, v in rows.items()})
        s = pipe.rank(c)
        top = c.item[np.lexsort((c.item, -s))][:10]
        assert ranked["items"][u].tolist() == top.tolist() or np.allclose(
            np.sort(s)[::-1][:10], ranked["scores"][u], atol=1e-6)  # equal scores may swap places
