from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from aisle.models.base import QueryBatch, recommend
from aisle.models.mf import ALS, BPR
from aisle.testing.contract import planted_toy


def test_als_fold_in_is_the_als_user_step() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    toy = planted_toy()
    model = ALS(factors=8, iterations=5, alpha=4.0, regularization=0.5, num_threads=1).fit(toy.train)
    ref = AlternatingLeastSquares(factors=8, regularization=0.5, alpha=4.0, num_threads=1)
    ref.item_factors = model.item_factors
    hist = toy.histories[3]
    row = sp.csr_matrix((np.ones(len(hist), np.float32), (np.zeros(len(hist), int), hist)),
                        shape=(1, toy.train.n_items))
    np.testing.assert_allclose(model.fold_in([hist])[0], ref.recalculate_user(0, row), rtol=1e-3, atol=1e-5)
    # a known user's history folds in to (nearly) the factors ALS learned for them
    u = toy.users[3]
    np.testing.assert_allclose(model.fold_in([toy.train.sequences()[u]])[0], model.user_factors[u], atol=0.05)


def test_als_cold_session_recommends_its_group() -> None:
    toy = planted_toy()
    model = ALS(factors=16, iterations=10, num_threads=1).fit(toy.train)
    session = [np.array([2, 3, 4]), np.array([22, 23])]  # group 0, group 1
    idx, _ = recommend(model.score(QueryBatch.of_histories(session)), 5, exclude=session)
    assert np.mean(toy.item_group[idx[0]] == 0) >= 0.8
    assert np.mean(toy.item_group[idx[1]] == 1) >= 0.8
    assert np.all(model.score(QueryBatch.of_histories([[]])) == 0)  # nothing to go on: all zero, no crash


def test_bpr_known_users_use_trained_factors_and_sessions_the_mean() -> None:
    toy = planted_toy()
    model = BPR(factors=8, iterations=20).fit(toy.train)
    x, y, bias = model.user_factors[:, :-1], model.item_factors[:, :-1], model.item_factors[:, -1]
    u, hist = toy.users[0], toy.histories[0]
    np.testing.assert_allclose(model.score(QueryBatch(np.array([u]), [hist]))[0], y @ x[u] + bias, rtol=1e-5)
    anon = model.score(QueryBatch.of_histories([hist]))[0]
    np.testing.assert_allclose(anon, y @ y[np.unique(hist)].mean(axis=0) + bias, rtol=1e-4, atol=1e-5)


def test_similar_items_are_cosine_of_item_factors() -> None:
    toy = planted_toy()
    model = ALS(factors=16, iterations=10, num_threads=1).fit(toy.train)
    idx, val = model.similar(np.array([5]), 3)
    norms = np.linalg.norm(model.item_factors, axis=1)
    assert np.all(norms[-toy.n_cold:] == 0)  # items nobody interacted with have no factors ...
    y = model.item_factors / np.maximum(norms, 1e-12)[:, None]
    cos = y @ y[5]
    cos[[5, *np.flatnonzero(norms == 0)]] = -np.inf  # ... and are nobody's neighbours
    assert list(idx[0]) == list(np.argsort(-cos)[:3])
    np.testing.assert_allclose(val[0], np.sort(cos)[::-1][:3], rtol=1e-5)
    cold, _ = model.similar(np.array([toy.train.n_items - 1]), 3)
    assert np.all(cold == -1)
