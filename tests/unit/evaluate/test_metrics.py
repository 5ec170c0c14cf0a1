"""Hand-computed cases for every ranking metric (several per metric, edge cases included)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aisle.evaluate import metrics as mx

L2, L3, L4 = 1.0, 1 / math.log2(3), 1 / math.log2(4)  # discounts at positions 1, 2, 3


def test_hits_match_targets_and_ignore_padding() -> None:
    topk = np.array([[3, 1, 2], [0, 4, -1], [-1, -1, -1]])
    targets = [[1], [5, 4], []]
    assert mx.hits(topk, targets).tolist() == [[False, True, False], [False, True, False], [False, False, False]]
    # a -1 slot never hits, not even a -1 padded target
    assert not mx.hits(np.array([[-1, 7]]), np.array([[-1]])).any()


def test_hits_with_item_ids_larger_than_topk() -> None:
    # keys are built per row: an item equal to another row's target must not hit
    topk = np.array([[10, 20], [30, 40]])
    assert mx.hits(topk, np.array([40, 10])).tolist() == [[False, False], [False, False]]
    assert mx.hits(topk, np.array([20, 30])).tolist() == [[False, True], [True, False]]


def test_hit_rate() -> None:
    h = mx.hits(np.array([[3, 1, 2], [0, 4, 5], [7, 8, 9]]), np.array([1, 5, 6]))
    assert mx.hit_rate(h, 3).tolist() == [1.0, 1.0, 0.0]
    assert mx.hit_rate(h, 2).tolist() == [1.0, 0.0, 0.0]
    assert mx.hit_rate(h, 1).tolist() == [0.0, 0.0, 0.0]


def test_recall_is_found_over_number_of_targets() -> None:
    topk = np.array([[1, 5, 2], [9, 8, 7]])
    targets = [[1, 2, 7], [3]]
    h, n = mx.hits(topk, targets), mx.n_relevant(mx.as_targets(targets))
    assert n.tolist() == [3, 1]
    assert mx.recall(h, n, 3) == pytest.approx([2 / 3, 0.0])
    assert mx.recall(h, n, 1) == pytest.approx([1 / 3, 0.0])
    assert mx.recall(h, np.array([0, 0]), 3).tolist() == [0.0, 0.0]  # no targets: 0, not a division error


def test_precision_and_f1() -> None:
    topk = np.array([[1, 5, 2], [4, 0, 6]])
    targets = [[1, 2, 7], [4, 9]]
    h, n = mx.hits(topk, targets), mx.n_relevant(mx.as_targets(targets))
    assert mx.precision(h, 3) == pytest.approx([2 / 3, 1 / 3])
    assert mx.precision(h, 1) == pytest.approx([1.0, 1.0])
    # row 0: P = R = 2/3 -> F1 2/3; row 1: P = 1/3, R = 1/2 -> F1 = 2 * (1/6) / (5/6) = 0.4
    assert mx.f1(h, n, 3) == pytest.approx([2 / 3, 0.4])
    assert mx.f1(np.zeros((1, 3), bool), np.array([2]), 3).tolist() == [0.0]


def test_precision_counts_padding_slots_as_misses() -> None:
    h = mx.hits(np.array([[4, -1, -1]]), np.array([4]))
    assert mx.precision(h, 3) == pytest.approx([1 / 3])


def test_binary_ndcg() -> None:
    topk = np.array([[5, 1, 2], [1, 2, 3], [7, 8, 9], [1, 9, 2]])
    targets = [[1], [1], [1], [1, 2]]
    h = mx.hits(topk, targets)
    present = mx.as_targets(targets) >= 0
    got = mx.ndcg(h, present, 3)
    # one target at position 2 -> 1/log2(3); at position 1 -> 1; missed -> 0;
    # two targets at positions 1 and 3 -> (1 + 1/log2(4)) / (1 + 1/log2(3))
    assert got == pytest.approx([L3, 1.0, 0.0, (L2 + L4) / (L2 + L3)])
    assert mx.ndcg(h, present, 1) == pytest.approx([0.0, 1.0, 0.0, 1.0])


def test_ndcg_ideal_is_capped_at_k() -> None:
    # 3 targets, K = 2, both slots hit: the ideal list also has only 2 slots -> NDCG 1
    h = mx.hits(np.array([[1, 2]]), np.array([[1, 2, 3]]))
    assert mx.ndcg(h, np.ones((1, 3)), 2) == pytest.approx([1.0])


def test_graded_ndcg_rewards_gain_order() -> None:
    targets = np.array([[10, 11], [10, 11]])
    gains = np.array([[5.0, 1.0], [5.0, 1.0]])
    topk = np.array([[11, 10], [10, 11]])
    g = mx.gain_matrix(topk, targets, gains)
    assert g.tolist() == [[1.0, 5.0], [5.0, 1.0]]
    ideal = 5 * L2 + 1 * L3
    assert mx.ndcg(g, gains, 2) == pytest.approx([(1 * L2 + 5 * L3) / ideal, 1.0])
    # through ranking_metrics, the graded variant is added next to the binary one (which is 1 for both rows)
    out = mx.ranking_metrics(topk, targets, [2], gains=gains)
    assert out["NDCG@2"] == pytest.approx([1.0, 1.0])
    assert out["NDCG@2 (graded)"] == pytest.approx([(1 * L2 + 5 * L3) / ideal, 1.0])


def test_mrr_at_k() -> None:
    h = mx.hits(np.array([[7, 8, 1], [1, 8, 9], [7, 8, 9]]), np.array([1, 1, 1]))
    assert mx.mrr(h, 3) == pytest.approx([1 / 3, 1.0, 0.0])
    assert mx.mrr(h, 2) == pytest.approx([0.0, 1.0, 0.0])
    # several targets: the first hit counts
    h2 = mx.hits(np.array([[7, 2, 1]]), np.array([[1, 2]]))
    assert mx.mrr(h2, 3) == pytest.approx([0.5])


def test_average_precision() -> None:
    topk = np.array([[1, 9, 2], [9, 1, 8]])
    targets = [[1, 2, 3], [1]]
    h, n = mx.hits(topk, targets), mx.n_relevant(mx.as_targets(targets))
    # row 0: hits at 1 and 3 -> (1/1 + 2/3) / min(3, 3); row 1: hit at 2 -> (1/2) / 1
    assert mx.average_precision(h, n, 3) == pytest.approx([(1 + 2 / 3) / 3, 0.5])
    # K = 2: row 0 has one hit in the first 2, divided by min(3, 2)
    assert mx.average_precision(h, n, 2) == pytest.approx([0.5, 0.5])
    assert mx.average_precision(np.zeros((1, 3), bool), np.array([1]), 3).tolist() == [0.0]


def test_reciprocal_rank_over_the_full_ranking() -> None:
    ranks = np.array([[4], [0], [9], [-1]])
    n_adm = np.array([10, 10, 9, 10])
    # rank 9 of 9 admissible items: the target could not be ranked (excluded) -> 0
    assert mx.reciprocal_rank(ranks, n_adm) == pytest.approx([0.2, 1.0, 0.0, 0.0])
    assert mx.reciprocal_rank(np.array([[3, 1]]), np.array([10])) == pytest.approx([0.5])


def test_auc_single_target() -> None:
    ranks = np.array([0, 4, 2, 5])
    n_adm = np.array([5, 5, 5, 5])
    # 1 - rank / (n_admissible - 1); rank 5 of 5 admissible = not rankable -> 0
    assert mx.auc(ranks, n_adm) == pytest.approx([1.0, 0.0, 0.5, 0.0])


def test_auc_multi_target_does_not_count_other_targets_as_negatives() -> None:
    # targets at positions 0 and 3 among 5 items: 3 negatives; the second target has 2 negatives above it
    # (position 3 minus the one target above) -> AUCs 1 and 1/3, mean 2/3
    assert mx.auc(np.array([[0, 3]]), np.array([5])) == pytest.approx([2 / 3])
    # the same with the targets listed in the other order
    assert mx.auc(np.array([[3, 0]]), np.array([5])) == pytest.approx([2 / 3])
    # one target unrankable: contributes 0 to the mean
    assert mx.auc(np.array([[0, 5]]), np.array([5])) == pytest.approx([0.5])
    # nothing but the target admissible: no negative ranked above it -> 1
    assert mx.auc(np.array([0]), np.array([1])) == pytest.approx([1.0])


def test_coverage() -> None:
    topk = np.array([[0, 1], [1, 2], [1, -1]])
    assert mx.coverage(topk, 10) == pytest.approx(0.3)
    assert mx.coverage(topk, 10, k=1) == pytest.approx(0.2)
    assert mx.coverage(np.full((2, 2), -1), 10) == 0.0


def test_popularity_percentile_and_bias() -> None:
    pct = mx.popularity_percentile(np.array([1, 5, 3, 3]))
    # ranks 1, 4, 2.5, 2.5 (ties averaged) -> (rank - 1) / 3
    assert pct == pytest.approx([0.0, 1.0, 0.5, 0.5])
    bias = mx.popularity_bias(np.array([[1, 2], [0, -1], [-1, -1]]), pct)
    assert bias[:2] == pytest.approx([0.75, 0.0])
    assert math.isnan(bias[2])  # nothing recommended: no bias to speak of
    assert mx.popularity_bias(np.array([[1, 0]]), pct, k=1) == pytest.approx([1.0])


def test_ranking_metrics_all_zero_when_nothing_hits() -> None:
    out = mx.ranking_metrics(np.array([[1, 2, 3]]), np.array([9]), [1, 3])
    assert set(out) == {f"{m}@{k}" for m in ("HR", "Recall", "Precision", "F1", "NDCG", "MRR", "MAP") for k in (1, 3)}
    assert all(v.tolist() == [0.0] for v in out.values())


def test_ranking_metrics_leave_one_out_hit_at_position_two() -> None:
    out = mx.ranking_metrics(np.array([[4, 7, 1]]), np.array([7]), [1, 3])
    assert out["HR@1"].tolist() == [0.0]
    assert out["HR@3"].tolist() == out["Recall@3"].tolist() == [1.0]
    assert out["NDCG@3"] == pytest.approx([L3])
    assert out["MRR@3"] == pytest.approx([0.5])
    assert out["MAP@3"] == pytest.approx([0.5])
    assert out["Precision@3"] == pytest.approx([1 / 3])


def test_pad_and_as_targets() -> None:
    assert mx.pad([[1, 2], [], [3]]).tolist() == [[1, 2], [-1, -1], [3, -1]]
    assert mx.pad([]).shape == (0, 1)
    assert mx.as_targets(np.array([4, 5])).tolist() == [[4], [5]]
    with pytest.raises(ValueError, match="rows"):
        mx.gain_matrix(np.zeros((2, 3), int), np.zeros((3, 1), int))
