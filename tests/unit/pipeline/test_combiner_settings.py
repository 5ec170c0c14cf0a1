"""The combiner's LightGBM settings come from the configuration (`lightgbm`, checked against
`combiner.TUNABLE`), and with `early_stop` its held-out queries choose the number of boosting rounds, which a saved
and loaded combiner keeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aisle.pipeline import Combiner, FeatureFrame, PipelineConfig, PipelineConfigError


def _frame(n_queries: int = 300, size: int = 40, seed: int = 0) -> tuple[FeatureFrame, np.ndarray, np.ndarray]:
    """Queries of `size` candidates with one target each; `a_score` finds it through noise, `b_score` is noise."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n_queries * size, np.float32)
    labels[np.arange(n_queries) * size + rng.integers(0, size, n_queries)] = 1.0
    values = np.column_stack([labels + rng.normal(0, 0.6, len(labels)), rng.random(len(labels))]).astype(np.float32)
    return FeatureFrame(("a_score", "b_score"), values), labels, np.full(n_queries, size)


def test_an_unknown_lightgbm_key_is_an_error_that_lists_the_accepted_ones() -> None:
    with pytest.raises(PipelineConfigError, match=r"unknown lightgbm key 'num_leafs'.*num_leaves"):
        PipelineConfig.from_json({"lightgbm": {"num_leafs": 31}})
    with pytest.raises(ValueError, match="objective"):
        Combiner(["a"], params={"objective": "regression"})
    config = PipelineConfig.from_json({"lightgbm": {"num_leaves": 31}, "early_stop": 20, "rounds": 300})
    assert PipelineConfig.from_json(config.to_json()) == config


def test_the_settings_reach_the_model() -> None:
    frame, labels, sizes = _frame()
    config = PipelineConfig.from_json({"lightgbm": {"num_leaves": 3}, "rounds": 7, "holdout_fraction": 0.0})
    combiner = Combiner.of_config(["a", "b"], config).fit(frame, labels, sizes, holdout_fraction=0.0,
                                                          rng=np.random.default_rng(0))
    trees = combiner.boosters[0].dump_model()["tree_info"]
    assert len(trees) == 7 and max(t["num_leaves"] for t in trees) <= 3


def test_early_stopping_chooses_the_rounds_on_held_out_queries_and_survives_a_reload(tmp_path: Path) -> None:
    frame, labels, sizes = _frame()
    combiner = Combiner(["a", "b"], rounds=2000, early_stop=10, params={"learning_rate": 0.3}).fit(
        frame, labels, sizes, holdout_fraction=0.3, rng=np.random.default_rng(0))
    assert combiner.ranker == "combiner"
    assert 1 <= combiner.best_rounds < 2000  # a one-feature signal is learned long before 2,000 rounds
    assert combiner.boosters[0].current_iteration() == combiner.best_rounds
    combiner.save(tmp_path / "c")
    again = Combiner.load(tmp_path / "c")
    assert (again.best_rounds, again.params, again.early_stop) == (combiner.best_rounds, {"learning_rate": 0.3}, 10)
    test, truth, _ = _frame(seed=1)
    np.testing.assert_array_equal(again.score(test), combiner.score(test))
    # it learned to rank by the feature that finds the target (and not by the noise): top-1 as often as that feature
    target = truth.reshape(300, 40).argmax(axis=1)
    by_feature = (test.column("a_score").reshape(300, 40).argmax(axis=1) == target).mean()
    assert (again.score(test).reshape(300, 40).argmax(axis=1) == target).mean() >= by_feature - 0.05 > 0.2


def test_bags_average_models_fitted_on_different_queries_and_survive_a_reload(tmp_path: Path) -> None:
    """`bags = 3`: three models, each on its own share of the queries with its own seed, scoring as their mean;
    saved and loaded they score the same; a combiner saved before bags (one model string) still loads; and the
    settings that cannot hold are refused."""
    frame, labels, sizes = _frame()
    config = PipelineConfig.from_json({"bags": 3, "bag_fraction": 0.5, "rounds": 10})
    bagged = Combiner.of_config(["a", "b"], config).fit(frame, labels, sizes, holdout_fraction=0.2,
                                                        rng=np.random.default_rng(0))
    test, _, _ = _frame(seed=1)
    assert len(bagged.boosters) == 3
    each = np.stack([b.predict(test.values, num_threads=1) for b in bagged.boosters])
    assert not np.allclose(each[0], each[1]) and not np.allclose(each[1], each[2])
    np.testing.assert_allclose(bagged.score(test), each.mean(axis=0))
    bagged.save(tmp_path / "bagged")
    np.testing.assert_array_equal(Combiner.load(tmp_path / "bagged").score(test), bagged.score(test))

    single = Combiner(["a", "b"], rounds=10).fit(frame, labels, sizes, holdout_fraction=0.2,
                                                 rng=np.random.default_rng(0))
    single.save(tmp_path / "single")
    meta = json.loads((tmp_path / "single" / "combiner.json").read_text())
    meta["lightgbm"] = meta["lightgbm"][0]
    for key in ("bags", "bag_fraction"):
        del meta[key]
    (tmp_path / "single" / "combiner.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(Combiner.load(tmp_path / "single").score(test), single.score(test))

    with pytest.raises(PipelineConfigError, match="bags"):
        PipelineConfig.from_json({"bags": 0})
    with pytest.raises(PipelineConfigError, match="early_stop"):
        PipelineConfig.from_json({"bags": 2, "early_stop": 10})
    with pytest.raises(ValueError, match="bag_fraction"):
        Combiner(["a", "b"], bags=2, bag_fraction=0.0)
    with pytest.raises(ValueError, match="early_stop"):
        Combiner(["a", "b"], bags=2, early_stop=10)


def test_trees_are_sized_by_the_training_queries_unless_the_configuration_sizes_them(tmp_path: Path) -> None:
    """A few hundred queries (ML-100K) train small trees, thousands larger ones (Beauty); a configuration that sets
    `num_leaves` or `min_data_in_leaf` keeps its own; a saved and loaded combiner says what it was sized to."""
    def leaves(combiner: Combiner) -> int:
        return max(t["num_leaves"] for t in combiner.boosters[0].dump_model()["tree_info"])

    fitted = {}
    for n in (300, 2_000, 5_000):
        frame, labels, sizes = _frame(n_queries=n)
        fitted[n] = Combiner(["a", "b"], rounds=3).fit(frame, labels, sizes, holdout_fraction=0.0,
                                                       rng=np.random.default_rng(0))
    assert fitted[300].sized == {"num_leaves": 7, "min_data_in_leaf": 100} and leaves(fitted[300]) <= 7
    assert fitted[2_000].sized == {"num_leaves": 15, "min_data_in_leaf": 50} and 7 < leaves(fitted[2_000]) <= 15
    assert fitted[5_000].sized == {"num_leaves": 31, "min_data_in_leaf": 100} and 15 < leaves(fitted[5_000]) <= 31
    frame, labels, sizes = _frame(n_queries=300)
    pinned = Combiner(["a", "b"], rounds=3, params={"min_data_in_leaf": 20}).fit(
        frame, labels, sizes, holdout_fraction=0.0, rng=np.random.default_rng(0))
    assert pinned.sized == {} and 7 < leaves(pinned) <= 15  # LGB_PARAMS' 15 leaves, the configuration's 20 rows
    fitted[300].save(tmp_path / "c")
    assert Combiner.load(tmp_path / "c").sized == fitted[300].sized
