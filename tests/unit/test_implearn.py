"""The ranker learned from impressions: it learns a planted preference and undoes a planted position bias; the
lists it learns from are the served lists rebuilt as serving saw them; a bundle serves it when its pipeline says
so, and off-policy evaluation scores it against the combiner on the same log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from aisle import implearn
from aisle.bundle import Bundle, fingerprint
from aisle.models.base import QueryBatch
from aisle.pipeline import FeatureFrame, PipelineConfig, SourceSpec
from aisle.pipeline.impression_ranker import ImpressionRanker
from aisle.simulate import World, WorldConfig, build_world, make_policy, simulate


def planted_log(seed: int, *, lists: int = 3000, k: int = 10, explore: float = 0.3, exam: float = 2.0
                ) -> tuple[FeatureFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Lists of k items with two features: `good` sets the chance of a click on an examined item, `bait` is what
    the logging policy sorts by (on 70% of lists; the rest are shuffled) and does nothing for the shopper. The
    shopper looks at position p with (1/p)^exam, so at face value the clicks say that bait sells."""
    rng = np.random.default_rng(seed)
    good, bait = rng.random((lists, k)), rng.random((lists, k))
    order = np.argsort(-bait, axis=1)
    shuffled = rng.random(lists) < explore
    order[shuffled] = np.argsort(rng.random((int(shuffled.sum()), k)), axis=1)
    good, bait = np.take_along_axis(good, order, 1), np.take_along_axis(bait, order, 1)
    position = np.broadcast_to(np.arange(1, k + 1), (lists, k))
    click = rng.random((lists, k)) < (1 / position) ** exam / (1 + np.exp(-(6 * good - 4)))
    keep = click.any(axis=1)
    values = np.stack([good[keep].ravel(), bait[keep].ravel()], axis=1).astype(np.float32)
    return (FeatureFrame(("good", "bait"), values), click[keep].ravel().astype(np.float64),
            np.full(int(keep.sum()), k), position[keep].ravel())


def test_the_ranker_learns_the_planted_preference_and_face_value_clicks_learn_the_position_bias() -> None:
    frame, labels, sizes, positions = planted_log(0)
    fresh = FeatureFrame(("good", "bait"), np.random.default_rng(1).random((2000, 2)).astype(np.float32))
    debiased = ImpressionRanker.fit(frame, labels, sizes, positions, seed=0).score(fresh)
    face = ImpressionRanker.fit(frame, labels, sizes, None, seed=0).score(fresh)
    good, bait = fresh.values[:, 0], fresh.values[:, 1]
    assert spearmanr(debiased, good)[0] > 0.9
    assert abs(spearmanr(debiased, bait)[0]) < 0.25  # bait does nothing for the shopper
    assert spearmanr(face, bait)[0] > 0.4  # at face value, being shown on top looks like being wanted
    assert spearmanr(face, good)[0] < spearmanr(debiased, good)[0] - 0.1


def test_a_log_without_a_click_is_refused() -> None:
    frame, labels, sizes, positions = planted_log(0, lists=50)
    with pytest.raises(ValueError, match="no list with a click"):
        ImpressionRanker.fit(frame, np.zeros_like(labels), sizes, positions)


# ---- from a served log -------------------------------------------------------------------------------------------

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    cfg = WorldConfig(n_items=200, n_users=150, n_events=5_000, seed=3, new_items=0)
    with build_world(cfg, pipeline=PipelineConfig(sources=SOURCES, rounds=10, ranker="impressions")) as w:
        yield w


@pytest.fixture(scope="module")
def logged(world: World) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    res = simulate(world, make_policy("epsilon:pipeline:0.5", world, seed=3), 800, k=6, seed=3, batch=20)
    past = pl.concat([world.dataset.events, res.events.select(world.dataset.events.columns)],
                     how="vertical_relaxed")
    return res.impressions, res.events, past


def test_lists_are_the_shown_items_with_graded_labels_and_the_features_serving_computes(
        world: World, logged: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]) -> None:
    impressions, events, past = logged
    bundle = Bundle.load(world.bundle_path, search=False)
    # a search list, clicked: not what the pipeline's ranker orders, so not a training list
    first_id = impressions["request_id"][0]
    search = impressions.filter(pl.col("request_id") == first_id).with_columns(
        pl.lit("search").alias("surface"), pl.lit("q-1").alias("request_id"))
    clicked = events.head(1).with_columns(pl.lit("q-1").alias("request_id"), pl.lit(search["item_id"][0])
                                          .alias("item_id"), pl.lit("click").alias("event_type"))
    data = implearn.training_lists(bundle, pl.concat([impressions, search]), pl.concat([events, clicked]),
                                   history_events=past)
    labelled = implearn.graded(impressions, events).filter(pl.col("grade").max().over("request_id") > 0)
    assert data.lists == labelled["request_id"].n_unique() > 20
    assert len(data.labels) == labelled.height and data.sizes.sum() == labelled.height
    assert sorted(np.unique(data.labels).tolist())[0] == 0 and data.labels.max() >= 1
    assert (data.frame.values[:, :6].sum(axis=1) == 0).any()  # explored items no source proposes are rows too
    # one list by hand: its shopper's history before it, the pipeline's candidates, the shown items' rows
    first = implearn.requests_of(labelled).sort("timestamp", maintain_order=True).head(1)
    history = implearn.histories_at(bundle, first, past)[0]
    user = bundle.users.encode(first["user_id"].to_list())
    shown = labelled.filter(pl.col("request_id") == first["request_id"][0]).sort("position")
    cands = bundle.pipeline.candidates(QueryBatch(user, [history]), exclude_history=False)
    rows = {int(i): r for i, r in zip(cands.item, cands.features.values, strict=True)}
    size = int(data.sizes[0])
    assert size == shown.height
    for n, item in enumerate(bundle.items.encode(shown["item_id"].to_list()).tolist()):
        if item in rows:  # proposed by a source: exactly the row serving ranks
            assert np.array_equal(data.frame.values[n], rows[item])
        else:  # shown by exploration: kept, with no source columns
            assert data.frame.values[n][: 6].sum() == 0
    assert np.array_equal(data.labels[:size], shown["grade"].to_numpy())
    assert np.array_equal(data.positions[:size], shown["position"].to_numpy())
    newest = implearn.training_lists(bundle, impressions, events, history_events=past, max_lists=5)
    assert newest.lists == 5 and newest.older_lists == data.lists - 5  # counted, not silently dropped
    assert np.array_equal(newest.labels, data.labels[-len(newest.labels):])


def test_a_bundle_serves_the_ranker_only_when_its_pipeline_chooses_it_and_ope_scores_both(
        world: World, logged: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame], tmp_path: Path) -> None:
    impressions, events, past = logged
    serving = Bundle.load(world.bundle_path, search=False)
    ranker = implearn.train(serving, impressions, events, history_events=past, seed=0)
    assert ranker.facts["labelled_lists"] > 20 and ranker.facts["debiased"]
    bundle = implearn.with_ranker(serving, ranker, world.dataset.events)
    bundle.save(tmp_path / "b", data_fingerprint=fingerprint(world.dataset.events), metrics={})
    loaded = Bundle.load(tmp_path / "b", search=False)
    assert loaded.pipeline is not None and loaded.pipeline.ranker == "impressions"
    reqs = implearn.requests_of(impressions).head(50)
    cands = loaded.pipeline.candidates(QueryBatch(loaded.users.encode(reqs["user_id"].to_list()),
                                                  implearn.histories_at(loaded, reqs, past)))
    assert np.allclose(loaded.pipeline.rank(cands), ranker.score(cands.features))
    assert not np.allclose(serving.pipeline.rank(cands), ranker.score(cands.features))
    combiner_config = PipelineConfig.from_json({**loaded.pipeline.config.to_json(), "ranker": "combiner"})
    loaded.pipeline.config = combiner_config
    assert loaded.pipeline.ranker != "impressions"
    assert np.allclose(loaded.pipeline.rank(cands), serving.pipeline.rank(cands))
    ope = implearn.compare_off_policy(bundle, serving, impressions, events, history_events=past, n_boot=100)
    assert ope["lists"] == impressions["request_id"].n_unique()
    for side in ("candidate", "serving"):
        assert ope[side]["matched_rows"] > 0
        for estimator in ("SNIPS", "DR"):
            e = ope[side][estimator]
            assert e["low"] <= e["value"] <= e["high"]
    assert ope["difference"]["SNIPS"] == pytest.approx(ope["candidate"]["SNIPS"]["value"]
                                                       - ope["serving"]["SNIPS"]["value"])
