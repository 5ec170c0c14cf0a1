"""Search evaluation's per-query NDCG@10 and Recall@100 are the evaluation module's metrics, on hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aisle.search.evaluate import JudgedQuery, metrics, ndcg_at, recall_at


def _judged(rows: list[int], relevance: list[float]) -> JudgedQuery:
    rel = np.asarray(relevance)
    return JudgedQuery("q", np.asarray(rows), rel - 1.0, int((rel >= 2.0).sum()))


def test_graded_ndcg_counts_judged_items_missing_from_the_catalog_in_the_ideal() -> None:
    jq = _judged([5, 7, -1], [3.0, 2.0, 3.0])  # gains 2, 1 and 2 (the last item is not in the catalog)
    disc = [1 / math.log2(i + 2) for i in range(3)]
    ideal = 2 * disc[0] + 2 * disc[1] + 1 * disc[2]
    assert ndcg_at(np.array([7, 9, 5]), jq) == pytest.approx((1 * disc[0] + 2 * disc[2]) / ideal)
    assert ndcg_at(np.array([], dtype=np.int64), jq) == 0.0
    assert ndcg_at(np.array([5]), _judged([5], [1.0])) is None  # no positive gain: left out


def test_a_repeated_judgment_counts_once_with_its_last_grade() -> None:
    jq = _judged([4, 4], [3.0, 2.0])
    assert ndcg_at(np.array([4]), jq, k=1) == pytest.approx(1 / 2)


def test_recall_divides_by_every_relevant_judgment() -> None:
    jq = _judged([1, 2, 3, -1], [3.0, 2.0, 1.67, 2.33])  # relevant: 1, 2 and the missing one
    assert recall_at(np.array([2, 3, 1]), jq, k=2) == pytest.approx(1 / 3)
    assert recall_at(np.array([2, 3, 1]), jq) == pytest.approx(2 / 3)
    assert recall_at(np.array([3]), _judged([3], [1.67])) is None
    summary = metrics([np.array([2, 3, 1]), np.array([3])], [jq, _judged([3], [1.67])])
    assert summary["queries_recall"] == 1 and summary["queries_ndcg"] == 2
