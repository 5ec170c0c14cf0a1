"""Distillation trains a smaller student toward the teacher; pruning zeroes the smallest weights, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aisle.models.base import QueryBatch
from aisle.models.sequential import SASRec
from aisle.optimize.distill import DistillConfig, distill, parameter_count, teacher_agreement
from aisle.optimize.parity import Parity, score_parity
from aisle.optimize.prune import dense_bytes, magnitude_prune, prunable, sparse_bytes, sparsity
from aisle.testing.contract import planted_toy


def test_student_is_smaller_and_follows_the_teacher(sasrec: SASRec) -> None:
    toy = planted_toy()
    student = distill(sasrec, toy.train, cfg=DistillConfig(temperature=2.0, alpha=1.0), dim=8, layers=1, epochs=8,
                      holdout=True)
    assert isinstance(student, SASRec) and student.seq.dim == 8 and student.seq.layers == 1
    assert parameter_count(student) < parameter_count(sasrec) / 2
    # pure soft targets (alpha = 1): what it learned came from the teacher's logits
    untrained = SASRec(dim=8, layers=1, max_len=12, progress=False)
    untrained.prepare(toy.train)
    hists = toy.histories
    # top-3 lists: by chance ~0.07 of the teacher's; the untrained student of the same shape stays near that
    assert teacher_agreement(sasrec, student, hists, 3) > teacher_agreement(sasrec, untrained, hists, 3) + 0.2
    assert student.result is not None and student.result.best_metric > 0.2


def test_distillation_settings_are_checked(sasrec: SASRec) -> None:
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ValueError, match="max_len"):
        distill(sasrec, planted_toy().train, max_len=5)
    with pytest.raises(ValueError, match="loss must be 'ce'"):
        distill(sasrec, planted_toy().train, loss="sampled")


@pytest.mark.parametrize("amount", [0.3, 0.7])
def test_pruning_zeroes_that_share_of_the_weight_matrices(sasrec: SASRec, amount: float) -> None:
    before = {k: v.clone() for k, v in sasrec.net.state_dict().items()}
    pruned = magnitude_prune(sasrec, amount)
    assert sparsity(pruned) == pytest.approx(amount, abs=0.01)
    assert all(torch.equal(before[k], v) for k, v in sasrec.net.state_dict().items())  # the original is untouched
    assert sparsity(sasrec) < 0.05
    # global magnitude: every surviving weight is at least as large as every removed one
    kept = torch.cat([getattr(m, n).detach().flatten() for m, n in prunable(pruned.net)])
    orig = torch.cat([getattr(m, n).detach().flatten() for m, n in prunable(sasrec.net)])
    removed = orig[(kept == 0) & (orig != 0)].abs()
    assert removed.max() <= kept[kept != 0].abs().min() + 1e-7
    # biases and norms are kept
    original = dict(sasrec.net.named_parameters())
    for name, p in pruned.net.named_parameters():
        if name.endswith("bias") or "norm" in name:
            assert torch.equal(p, original[name])
    assert sparse_bytes(pruned) < dense_bytes(pruned) or amount < 0.5


def test_pruning_nothing_changes_nothing(sasrec: SASRec) -> None:
    batch = QueryBatch.of_histories(planted_toy().histories[:10])
    np.testing.assert_array_equal(magnitude_prune(sasrec, 0.0).score(batch), sasrec.score(batch))
    with pytest.raises(ValueError, match="amount"):
        magnitude_prune(sasrec, 1.0)


def test_parity_of_a_model_with_itself(sasrec: SASRec) -> None:
    diff, overlap = score_parity(sasrec, sasrec, planted_toy().histories[:10])
    assert diff == 0.0 and overlap == 1.0
    p = Parity(0.0, 1.0, ndcg=0.049, ndcg_reference=0.050, eval_seconds=1.0)
    assert p.relative_change == pytest.approx(-0.02)
    assert p.as_dict()["relative_change"] == pytest.approx(-0.02)
