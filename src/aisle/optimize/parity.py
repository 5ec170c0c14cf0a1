"""How much an optimised model differs from its original: score differences and NDCG@10 through the harness.

Two measures, because they answer different questions: `max_abs_diff` of the scores on a sample of
histories says whether two implementations compute the same function (an ONNX export must be at float
round-off); the NDCG@10 change on the test targets of the official protocol (`aisle.evaluate.evaluate`, full
ranking, history excluded) says what an approximation (int8, a student, pruning, ANN) costs a shopper.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aisle.data.splits import Split
from aisle.evaluate.protocol import evaluate
from aisle.models.base import QueryBatch, Recommender, TrainData
from aisle.optimize.encoders import max_abs_diff


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float  # of the scores over every item, on the sampled histories
    top10_overlap: float  # mean share of the reference's top-10 (history excluded) that the candidate keeps
    ndcg: float  # NDCG@10 on the split's test targets
    ndcg_reference: float
    eval_seconds: float

    @property
    def relative_change(self) -> float:
        """(ndcg - reference) / reference: -0.02 is a 2% loss."""
        return (self.ndcg - self.ndcg_reference) / self.ndcg_reference if self.ndcg_reference else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relative_change": self.relative_change}


def score_parity(reference: Recommender, candidate: Recommender, histories: list[np.ndarray],
                 k: int = 10) -> tuple[float, float]:
    """(max |score difference| over finite reference scores, mean top-k overlap) on `histories`."""
    batch = QueryBatch.of_histories(histories)
    a, b = reference.score(batch), candidate.score(batch)
    both = np.isfinite(a) & np.isfinite(b)
    diff = max_abs_diff(a[both], b[both]) if both.any() else float("inf")
    overlap = []
    for r, h in enumerate(batch.histories):
        h = h[(h >= 0) & (h < a.shape[1])]
        x, y = a[r].copy(), b[r].copy()
        x[h], y[h] = -np.inf, -np.inf
        top_a = np.argsort(-x, kind="stable")[:k]
        top_b = np.argsort(-y, kind="stable")[:k]
        overlap.append(len(np.intersect1d(top_a, top_b)) / k)
    return diff, float(np.mean(overlap)) if overlap else 0.0


def ndcg10(model: Recommender, train: TrainData, split: Split) -> tuple[float, float]:
    """(test NDCG@10, seconds) by the official protocol."""
    t0 = time.perf_counter()
    res = evaluate(model, train, split, "test", ks=(10,))
    return float(res.metrics["NDCG@10"]), time.perf_counter() - t0


def parity(reference: Recommender, candidate: Recommender, train: TrainData, split: Split, *,
           histories: list[np.ndarray], reference_ndcg: float | None = None) -> Parity:
    """Both measures for `candidate` against `reference` (pass `reference_ndcg` to evaluate it only once)."""
    diff, overlap = score_parity(reference, candidate, histories)
    ref = reference_ndcg if reference_ndcg is not None else ndcg10(reference, train, split)[0]
    value, seconds = ndcg10(candidate, train, split)
    return Parity(diff, overlap, value, ref, seconds)


__all__ = ["Parity", "ndcg10", "parity", "score_parity"]
