"""Learned reranking: LightGBM LambdaMART over the fused candidates' features.

Why LambdaMART: the label is graded (Home Depot: mean rater score 1-3), what matters is the order of the top of
the list, and the features are heterogeneous (BM25 scores, cosines, ratios, flags) with interactions a linear
blend cannot express ("all words match" matters less when the head word is missing). `lambdarank` optimises
NDCG directly and trains in a couple of minutes on 800k candidate rows on 2 cores.

Labels are integer grades 0..6 = round(3 x gain) with `label_gain` i/3, so the model's NDCG is exactly the
evaluation's linear-gain NDCG (gain = relevance - 1; unjudged candidates have grade 0). Only the first
`RERANK_DEPTH` fused candidates are reranked, in training and at query time alike, so both see the same
distribution; the rest keep their fusion order. Depth 150 (Home Depot, 5-fold CV): NDCG@10 0.4718 / 0.4722 /
0.4731 and Recall@100 0.799 / 0.809 / 0.812 at depth 100 / 150 / 200; 150 buys most of the recall for +50% of the
reranking cost. Training and prediction use one thread: LightGBM's OpenMP on 2 busy cores was 7x slower than one.
The model is saved in LightGBM's text format (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np

from aisle.search.features import FEATURES

RERANK_DEPTH = 150
MAX_GRADE = 6

PARAMS: dict[str, object] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "ndcg_eval_at": [10],
    "label_gain": [i / 3 for i in range(MAX_GRADE + 1)],
    "lambdarank_truncation_level": 20,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
    "seed": 0,
}
NUM_ROUNDS = 200


def grades(gains: np.ndarray) -> np.ndarray:
    """Linear gains in [0, 2] -> integer grades 0..6."""
    return np.clip(np.rint(np.asarray(gains, dtype=np.float64) * 3), 0, MAX_GRADE).astype(np.int32)


class Reranker:
    """A trained LambdaMART model over `FEATURES`, or over the features of an older version that this one still
    computes: a bundle trained before features were added keeps serving its reranker (on its own columns of the
    feature matrix) instead of refusing to load; retraining it lets it use the new ones."""

    def __init__(self, booster: lgb.Booster, feature_names: Sequence[str] = FEATURES) -> None:
        self.booster = booster
        self.feature_names = tuple(feature_names)
        gone = [f for f in self.feature_names if f not in FEATURES]
        if gone:
            raise ValueError(f"reranker was trained on features this version no longer computes "
                             f"({', '.join(gone[:5])}); retrain it")
        self._columns = (None if self.feature_names == FEATURES
                         else np.array([FEATURES.index(f) for f in self.feature_names], dtype=np.int64))

    @classmethod
    def fit(cls, x: np.ndarray, gains: np.ndarray, group_sizes: Sequence[int], *, rounds: int = NUM_ROUNDS,
            threads: int = 1, params: dict[str, object] | None = None) -> Reranker:
        """Train on candidate rows grouped by query (`group_sizes` in row order)."""
        p = {**PARAMS, **(params or {}), "num_threads": threads}
        ds = lgb.Dataset(x, grades(gains), group=list(group_sizes), feature_name=list(FEATURES),
                         free_raw_data=True)
        return cls(lgb.train(p, ds, num_boost_round=rounds))

    def predict(self, x: np.ndarray, *, threads: int = 1) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.booster.predict(x if self._columns is None else x[:, self._columns], num_threads=threads)

    def importance(self) -> dict[str, float]:
        gain = self.booster.feature_importance("gain")
        return dict(sorted(zip(self.feature_names, (float(g) for g in gain), strict=True), key=lambda t: -t[1]))

    def save(self, path: Path) -> None:
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path) -> Reranker:
        booster = lgb.Booster(model_file=str(path))
        return cls(booster, booster.feature_name())
