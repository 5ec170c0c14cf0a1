"""The evaluation protocol: tie rule, exclusions, stages, sampled mode, multi-target — on cases worked out by hand."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from aisle.data.splits import leave_one_out, temporal_split
from aisle.evaluate.protocol import evaluate, item_vocab, target_ranks, top_k
from aisle.models.base import QueryBatch, TrainData
from aisle.testing.toy import T0, ToyPopularity, sequences_frame, toy_events

L3 = 1 / math.log2(3)

# Items in first-appearance order: a b c d e (indices 0..4). Leave-one-out: test targets d, c, d;
# validation targets c, d, e. See the tests below for the hand-worked rankings.
SEQS = {"u1": ["a", "b", "c", "d"], "u2": ["a", "b", "d", "c"], "u3": ["a", "c", "e", "d"]}


def _fit(events: pl.DataFrame, split_events: pl.DataFrame, model=None):
    vocab = item_vocab(events)
    data = TrainData.from_events(split_events, items=vocab)
    return (model or ToyPopularity()).fit(data), data


# ---- ranking primitives -------------------------------------------------------------------------


def test_top_k_breaks_ties_by_lower_index() -> None:
    idx, vals = top_k(np.array([[1, 3, 3, 3, 0]], np.float32), 2)
    assert idx.tolist() == [[1, 2]] and vals.tolist() == [[3, 3]]
    assert top_k(np.array([[1, 3, 3, 3, 0]], np.float32), 4)[0].tolist() == [[1, 2, 3, 0]]
    assert top_k(np.zeros((1, 6), np.float32), 3)[0].tolist() == [[0, 1, 2]]


def test_top_k_pads_inadmissible_slots_and_treats_nan_as_inadmissible() -> None:
    s = np.array([[-np.inf, 2, np.nan, -np.inf], [1, 1, 1, 1]], np.float32)
    idx, _ = top_k(s, 3)
    assert idx.tolist() == [[1, -1, -1], [0, 1, 2]]
    assert top_k(s, 10)[0].shape == (2, 4)  # k is capped at the number of items


def test_top_k_and_ranks_agree_with_a_brute_force_stable_sort() -> None:
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, (40, 30)).astype(np.float32)  # many ties
    s[rng.random(s.shape) < 0.1] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(30), s.shape), -s), axis=1)  # score desc, index asc
    idx, _ = top_k(s, 7)
    expected = np.where(np.isneginf(np.take_along_axis(s, order[:, :7], 1)), -1, order[:, :7])
    assert (idx == expected).all()
    targets = rng.integers(0, 30, 40)
    ranks, n_adm = target_ranks(s, targets)
    position = np.argsort(order, axis=1)[np.arange(40), targets]
    admissible = s[np.arange(40), targets] > -np.inf
    assert (n_adm == (s > -np.inf).sum(1)).all()
    assert (ranks[:, 0] == np.where(admissible, position, n_adm)).all()
    # the defining consistency: a target is in the top k exactly when its rank is below k
    in_top = (idx == targets[:, None]).any(1)
    assert (in_top == (ranks[:, 0] < 7)).all()


def test_target_ranks_with_ties_and_exclusions() -> None:
    s = np.array([[5, 3, 3, 3, 1, -np.inf]], np.float32)
    ranks, n_adm = target_ranks(s, np.array([[3, 1, 5, 4, -1]]))
    # item 3 ties with items 1 and 2 (lower indices first) and is below item 0; item 5 is excluded
    assert ranks.tolist() == [[3, 1, 5, 4, -1]] and n_adm.tolist() == [5]


# ---- the protocol end to end on hand-worked cases -----------------------------------------------


def test_test_stage_by_hand_with_exclusions_and_tie_rule() -> None:
    ev = sequences_frame(SEQS)
    split = leave_one_out(ev)
    model, data = _fit(ev, split.history("test"))
    res = evaluate(model, data, split, "test", ks=(1, 2))
    # popularity over train + validation targets: a 3, b 2, c 2, d 1, e 1.
    # u1 (history a b c) ranks d, e: tied at 1, d has the lower index -> target d at rank 0
    # u2 (history a b d) ranks c, e -> target c at rank 0
    # u3 (history a c e) ranks b, d -> target d at rank 1 (AUC 1 - 1/1 = 0)
    assert res.n_users == 3 and res.users.tolist() == ["u1", "u2", "u3"]
    assert res.metrics["HR@1"] == pytest.approx(2 / 3)
    assert res.metrics["HR@2"] == pytest.approx(1.0)
    assert res.metrics["NDCG@2"] == pytest.approx((1 + 1 + L3) / 3)
    assert res.metrics["MRR"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert res.metrics["AUC"] == pytest.approx(2 / 3)
    assert res.per_user["HR@1"].tolist() == [1.0, 1.0, 0.0]
    assert res.unreachable_targets == 0 and res.sampled is None
    assert res.metrics["Coverage@1"] == pytest.approx(3 / 5)  # d, c and b recommended first


def test_valid_stage_uses_training_history_only() -> None:
    ev = sequences_frame(SEQS)
    split = leave_one_out(ev)
    model, data = _fit(ev, split.history("valid"))
    res = evaluate(model, data, split, "valid", ks=(1, 2))
    # train: u1 a b, u2 a b, u3 a c -> a 3, b 2, c 1, d 0, e 0. Targets c, d, e:
    # u1 ranks c d e -> rank 0; u2 ranks c d e -> d at 1; u3 ranks b d e -> e at 2
    assert res.per_user["HR@1"].tolist() == [1.0, 0.0, 0.0]
    assert res.per_user["MRR"] == pytest.approx([1.0, 0.5, 1 / 3])
    assert res.per_user["AUC"] == pytest.approx([1.0, 0.5, 0.0])


def test_a_target_already_in_the_history_is_a_counted_miss() -> None:
    ev = sequences_frame({"u1": ["a", "b", "c", "a"], "u2": ["b", "c", "d", "e"]})
    split = leave_one_out(ev)
    model, data = _fit(ev, split.history("test"))
    res = evaluate(model, data, split, "test", ks=(5,))
    assert res.unreachable_targets == 1
    assert res.per_user["HR@5"].tolist() == [0.0, 1.0]
    assert res.per_user["AUC"][0] == 0.0 and res.per_user["MRR"][0] == 0.0
    # without exclusions the repeat purchase can be ranked: b 2, c 2, a 1, d 1, e 0 -> a at rank 2
    free = evaluate(model, data, split, "test", ks=(5,), exclude_seen=False)
    assert free.unreachable_targets == 0 and free.per_user["MRR"][0] == pytest.approx(1 / 3)


def test_temporal_multi_target_with_a_cold_user() -> None:
    warm = sequences_frame({"u1": ["a", "b", "c", "d", "e"], "u2": ["b", "c", "a", "f"]})
    cold = sequences_frame({"u3": ["a"]}, start=T0 + timedelta(seconds=3))
    ev = pl.concat([warm, cold])
    split = temporal_split(ev, valid_start=T0 + timedelta(seconds=2), test_start=T0 + timedelta(seconds=3))
    model, data = _fit(ev, split.history("test"))
    res = evaluate(model, data, split, "test", ks=(1, 2, 3))
    # history: u1 a b c, u2 b c a -> a, b, c have 2 each; d, e, f 0. Vocabulary order a b c d e f.
    # u1 targets {d, e}: ranks d e f -> ranks 0, 1. u2 target f: ranks d e f -> rank 2.
    # u3 is unknown to the model (no training events): popularity still ranks a first -> rank 0.
    assert res.users.tolist() == ["u1", "u2", "u3"]
    assert res.per_user["Recall@1"] == pytest.approx([0.5, 0.0, 1.0])
    assert res.per_user["Recall@2"] == pytest.approx([1.0, 0.0, 1.0])
    assert res.per_user["Precision@2"] == pytest.approx([1.0, 0.0, 0.5])
    assert res.per_user["NDCG@3"] == pytest.approx([1.0, 0.5, 1.0])
    assert res.per_user["AUC"] == pytest.approx([1.0, 0.0, 1.0])
    assert res.n_targets == 4


def test_batch_size_does_not_change_the_numbers() -> None:
    ev = toy_events(60, 40, seed=1)
    split = leave_one_out(ev)
    model, data = _fit(ev, split.history("test"))
    a = evaluate(model, data, split, "test", batch_size=7)
    b = evaluate(model, data, split, "test")
    assert a.metrics == b.metrics and a.metrics["HR@10"] > 0


def test_sampled_mode_is_labelled_seeded_and_exact_when_everything_is_sampled() -> None:
    ev = toy_events(60, 40, seed=2)
    split = leave_one_out(ev)
    model, data = _fit(ev, split.history("test"))
    full = evaluate(model, data, split, "test")
    s1 = evaluate(model, data, split, "test", sampled=5, seed=3)
    s2 = evaluate(model, data, split, "test", sampled=5, seed=3)
    assert s1.sampled == 5 and s1.as_dict()["sampled"] == 5
    assert "HR@10 (sampled-5)" in s1.metrics and not any(" (sampled-5)" not in k for k in s1.metrics)
    assert s1.metrics == s2.metrics
    # with 5 negatives per target every target is in the top 10: HR@10 = 1 unless it was unreachable
    assert s1.metrics["HR@10 (sampled-5)"] == pytest.approx(1 - s1.unreachable_targets / s1.n_users)
    assert s1.metrics["HR@10 (sampled-5)"] > full.metrics["HR@10"]
    every = evaluate(model, data, split, "test", sampled=1000)
    assert {k.removesuffix(" (sampled-1000)"): v for k, v in every.metrics.items()} == pytest.approx(full.metrics)


def test_history_is_passed_to_the_model_in_time_order() -> None:
    seen: list[list[int]] = []

    class Spy(ToyPopularity):
        def score(self, batch: QueryBatch) -> np.ndarray:
            seen.extend(h.tolist() for h in batch.histories)
            return super().score(batch)

    ev = sequences_frame(SEQS)
    split = leave_one_out(ev)
    model, data = _fit(ev, split.history("test"), Spy())
    evaluate(model, data, split, "test")
    assert seen == [[0, 1, 2], [0, 1, 3], [0, 2, 4]]  # a b c / a b d / a c e, validation target last


def test_bad_inputs_are_clear_errors() -> None:
    ev = sequences_frame({**SEQS, "u4": ["a", "b", "c", "z"]})
    split = leave_one_out(ev)
    data = TrainData.from_events(split.history("test"))  # vocabulary lacks z, a test-only item
    with pytest.raises(ValueError, match="outside the ranking vocabulary"):
        evaluate(ToyPopularity().fit(data), data, split, "test")

    class Short(ToyPopularity):
        def score(self, batch: QueryBatch) -> np.ndarray:
            return np.zeros((len(batch), 2), np.float32)

    model, data = _fit(ev, split.history("test"), Short())
    with pytest.raises(ValueError, match="shape"):
        evaluate(model, data, split, "test")
    with pytest.raises(ValueError, match="stage"):
        evaluate(model, data, split, "train")


def test_item_vocab_is_first_appearance_then_catalog_only_items() -> None:
    ev = sequences_frame({"u2": ["c", "a"], "u1": ["a", "b"]})
    items = pl.DataFrame({"item_id": ["z", "a"]})
    assert item_vocab(ev, items).ids.tolist() == ["c", "a", "b", "z"]
