"""The optional combiner feature groups (`PipelineConfig.features`): what the columns mean on hand-made candidates,
and that a pipeline that uses them answers the same after a save and load (serving reads the tags
from the bundle, not from the catalog)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aisle.data.readers import read_dataspec
from aisle.evaluate.protocol import item_vocab
from aisle.models.base import QueryBatch, TrainData
from aisle.pipeline import GROUPS, Pipeline, PipelineConfig, PipelineConfigError
from aisle.pipeline.core import item_attributes
from aisle.pipeline.features import ItemFacts, Tags, feature_names, merge
from aisle.pipeline.sources import Contributions, Window
from aisle.testing.toy import toy_sequences


def _merge(groups: tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One query with history [0, 1] (1 last); source a proposes items 2 (score 4) and 3 (score 1), source b item
    3 (score 2). Tags: 0 {10, 11}, 1 {11}, 2 {10, 11}, 3 {12}. Returns the candidates and their columns."""
    facts = ItemFacts.of_counts(np.array([1.0, 3.0, 7.0, 0.0]), np.zeros(4), item_attributes(None, 4),
                                Tags.of_lists([[10, 11], [11], [10, 11], [12]]))
    history = [np.array([0, 1])]
    a = Contributions(np.array([0, 0]), np.array([2, 3]), np.array([4.0, 1.0]), np.array([-1, -1]), np.zeros(2))
    b = Contributions(np.array([0]), np.array([3]), np.array([2.0]), np.array([-1]), np.zeros(1))
    cands = merge([a, b], ["a", "b"], facts, history, Window.of(history, 5), exclude_history=True, groups=groups)
    names = feature_names(["a", "b"], groups)
    assert cands.features.names == tuple(names)
    return cands.item, {n: cands.features.column(n) for n in names}


def test_tags_compare_the_candidate_with_the_window_and_the_last_item() -> None:
    items, cols = _merge(("tags",))
    assert items.tolist() == [2, 3]
    # item 2's tags: 10 is on one of the two window items, 11 on both -> (1/2 + 2/2) / 2; the last item has 11 only
    assert cols["tag_share"].tolist() == pytest.approx([0.75, 0.0])
    assert cols["tag_last"].tolist() == pytest.approx([0.5, 0.0])


def test_an_unknown_group_is_an_error_and_old_configurations_have_none() -> None:
    with pytest.raises(PipelineConfigError, match=r"unknown feature group 'tag'.*tags"):
        PipelineConfig(features=("tag",))
    saved = PipelineConfig().to_json()
    del saved["features"]
    assert PipelineConfig.from_json(saved).features == ()
    assert set(GROUPS) == {"tags", "full"} and PipelineConfig().features == ("tags",)


def _toy_train(tmp_path: Path) -> TrainData:
    seqs = toy_sequences(150, 60, seed=2)
    (tmp_path / "Toy.txt").write_text("\n".join(f"{u} {' '.join(s)}" for u, s in seqs.items()) + "\n")
    items = sorted({i for s in seqs.values() for i in s})
    (tmp_path / "Toy_item2attributes.json").write_text(json.dumps({i: [n % 7, 100 + n % 3]
                                                                  for n, i in enumerate(items)}))
    data = read_dataspec(f"s3rec:{tmp_path / 'Toy.txt'}")
    return TrainData.from_events(data.events, items=item_vocab(data.events, data.items), catalog=data.items)


_ALS = {"key": "als", "model": "als", "kind": "user", "params": {"factors": 8, "iterations": 3}}


def test_full_scores_every_candidate_with_each_user_model(tmp_path: Path) -> None:
    """The "full" group: the ALS source's own score of every merged candidate, also the ones only Markov proposed,
    and the candidate's rank among its query's candidates by that score; sources that cannot score any item (an
    item-to-item table) get no such columns."""
    train = _toy_train(tmp_path)
    config = PipelineConfig.from_json({**PipelineConfig().to_json(), "features": ["full"], "per_source": 3,
                                       "sources": [_ALS, {"key": "markov", "model": "markov", "kind": "i2i"}]})
    pipe = Pipeline(config).fit(train)
    assert pipe.feature_names()[-2:] == ["als_full", "als_full_rr"]
    sequences = train.sequences()
    users = np.arange(10)
    cands = pipe.candidates(QueryBatch(users, [sequences[u] for u in users]))
    als = pipe.source("als").model
    expected = als.score(QueryBatch(users, [sequences[u] for u in users]))[cands.query, cands.item]
    np.testing.assert_allclose(cands.features.column("als_full"), expected, rtol=1e-4, atol=1e-5)
    # the pool is wider than ALS's own 3 per query, and every candidate has an ALS score and rank
    only_markov = cands.features.column("als_rr") == 0
    assert only_markov.sum() > 0 and (cands.features.column("als_full_rr")[only_markov] > 0).all()
    for q in range(len(users)):
        rows = cands.query == q
        order = np.argsort(-cands.features.column("als_full")[rows], kind="stable")
        ranks = 1.0 / cands.features.column("als_full_rr")[rows][order] - 1.0
        np.testing.assert_allclose(ranks, np.arange(rows.sum()), atol=1e-3)
    without = Pipeline(config.updated({"features": []})).fit(train)
    assert "als_full" not in without.candidates(QueryBatch(users, [sequences[u] for u in users])).features.names


def test_a_pipeline_with_every_group_answers_the_same_after_save_and_load(tmp_path: Path) -> None:
    train = _toy_train(tmp_path)
    config = PipelineConfig.from_json({**PipelineConfig().to_json(), "features": list(GROUPS), "sources": [
        _ALS, {"key": "markov", "model": "markov", "kind": "i2i"}, {"key": "hot", "model": "trending",
                                                                      "kind": "trending"}]})
    pipe = Pipeline(config).fit(train)
    sequences = train.sequences()
    batch = QueryBatch(np.arange(20), [sequences[u] for u in range(20)])
    before = pipe.candidates(batch)
    assert before.features.column("tag_share").max() > 0  # the catalog's ids reached the features
    assert before.features.column("als_full_rr").min() > 0  # ALS scored every candidate
    pipe.save(tmp_path / "pipe")
    loaded = Pipeline.load(tmp_path / "pipe")
    after = loaded.candidates(batch)
    assert after.features.names == before.features.names
    np.testing.assert_array_equal(after.features.values, before.features.values)
    np.testing.assert_allclose(loaded.rank(after), pipe.rank(before))
