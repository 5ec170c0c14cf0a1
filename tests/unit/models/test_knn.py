from __future__ import annotations

import numpy as np

from aisle.models.base import QueryBatch, TrainData
from aisle.models.knn import ItemKNN, UserKNN
from aisle.testing.toy import sequences_frame, toy_events


def test_itemknn_shrunk_asymmetric_cosine() -> None:
    data = TrainData.from_events(toy_events(40, 10, seed=1))
    model = ItemKNN(neighbors=100, shrink=3.0, alpha=0.75, history_decay=1.0).fit(data)
    x = data.matrix(binary=True).toarray().astype(np.float64)
    co, c = x.T @ x, x.sum(0)
    expected = co / (c[:, None] ** 0.75 * c[None, :] ** 0.25 + 3.0)
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(model.sim.toarray(), expected, rtol=1e-5)


def test_itemknn_keeps_top_neighbours_and_weights_recent_items() -> None:
    data = TrainData.from_events(toy_events(40, 10, seed=1))
    model = ItemKNN(neighbors=3).fit(data)
    assert np.diff(model.sim.indptr).max() <= 3
    seqs = {"a": ["p", "q"], "b": ["p", "q"], "c": ["r", "s"], "d": ["r", "s"]}
    data = TrainData.from_events(sequences_frame(seqs))
    p, q, r, s = range(4)
    flat, recent = ItemKNN(shrink=0, history_decay=1.0).fit(data), ItemKNN(shrink=0, history_decay=0.5).fit(data)
    hist = QueryBatch.of_histories([[p, r]])  # r is the latest
    assert flat.score(hist)[0, q] == flat.score(hist)[0, s]
    assert recent.score(hist)[0, s] > recent.score(hist)[0, q]
    idx, _ = recent.similar(np.array([p]), 2)
    assert idx[0, 0] == q and idx[0, 1] == -1


def test_userknn_hand_computed_and_never_its_own_neighbour() -> None:
    seqs = {"a": ["x", "y"], "b": ["x", "y", "z"], "c": ["w"]}
    data = TrainData.from_events(sequences_frame(seqs))
    model = UserKNN(neighbors=10, shrink=0.0, history_decay=1.0).fit(data)
    x, y, z, w = range(4)
    s = model.score(QueryBatch.of_histories([[x, y]]))[0]
    cos_b = 2 / (np.sqrt(2) * np.sqrt(3))
    np.testing.assert_allclose(s[z], cos_b, rtol=1e-6)  # only b holds z
    np.testing.assert_allclose(s[x], 1.0 + cos_b, rtol=1e-6)  # a (cosine 1) and b
    assert s[w] == 0
    known = model.score(QueryBatch(np.array([0]), [np.array([x, y])]))[0]
    np.testing.assert_allclose(known[x], cos_b, rtol=1e-6)  # user a is not a neighbour of user a
    top1 = UserKNN(neighbors=1, shrink=0.0, history_decay=1.0).fit(data)
    np.testing.assert_allclose(top1.score(QueryBatch.of_histories([[x, y]]))[0, z], 0.0)  # a is the one neighbour
