from __future__ import annotations

import numpy as np
import pytest

from aisle.models.base import QueryBatch, TrainData
from aisle.models.ease import EASE, CatalogTooLargeError
from aisle.testing.toy import sequences_frame, toy_events


def test_ease_equals_closed_form() -> None:
    data = TrainData.from_events(toy_events(30, 12, seed=3))
    model = EASE(l2=5.0, history_decay=1.0).fit(data)
    x = data.matrix(binary=True).toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    np.testing.assert_allclose(model.weights, b, atol=1e-5)
    assert np.all(np.diag(model.weights) == 0)
    np.testing.assert_allclose(model.score(QueryBatch.of_users(data, [0, 1])), x[:2] @ b, atol=1e-4)


def test_ease_refuses_large_catalogs_clearly() -> None:
    data = TrainData.from_events(sequences_frame({"a": [str(i) for i in range(11)]}))
    with pytest.raises(CatalogTooLargeError, match="max_items=10"):
        EASE(max_items=10).fit(data)
