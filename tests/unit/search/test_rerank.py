"""A reranker saved by an older version (fewer features) keeps serving after an upgrade, on its own columns."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from aisle.search.features import FEATURES
from aisle.search.rerank import Reranker


def _booster(names: list[str], rng: np.random.Generator) -> tuple[lgb.Booster, np.ndarray]:
    x = rng.normal(size=(400, len(names)))
    y = np.clip(np.rint(x[:, 0] * 2 + 2), 0, 4).astype(int)  # depends on the first feature
    ds = lgb.Dataset(x, y, group=[20] * 20, feature_name=names)
    params = {"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5, "deterministic": True, "seed": 0}
    return lgb.train(params, ds, num_boost_round=20), x


def test_an_older_rerankers_features_are_picked_from_the_current_matrix(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    old = [FEATURES[i] for i in (5, 0, 11)]  # an older version's features, in its own order
    booster, x_old = _booster(old, rng)
    booster.save_model(str(tmp_path / "reranker.txt"))
    loaded = Reranker.load(tmp_path / "reranker.txt")
    x_now = rng.normal(size=(len(x_old), len(FEATURES)))  # what this version computes
    x_now[:, [5, 0, 11]] = x_old
    np.testing.assert_allclose(loaded.predict(x_now), booster.predict(x_old))


def test_a_reranker_over_a_feature_this_version_lacks_is_refused(tmp_path: Path) -> None:
    booster, _ = _booster([FEATURES[0], "a_feature_from_the_future"], np.random.default_rng(1))
    booster.save_model(str(tmp_path / "reranker.txt"))
    with pytest.raises(ValueError, match="a_feature_from_the_future"):
        Reranker.load(tmp_path / "reranker.txt")
