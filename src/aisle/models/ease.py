"""EASE (Steck, 2019): a shallow item-item autoencoder with a closed-form solution.

Why it is here: one matrix inverse, no sampling, no epochs, and on sparse logs it matches or beats deep
models. With G = XᵀX + λI and P = G⁻¹, the weights are B = I − P·diag(1/diag(P)) (so diag(B) = 0: an item
may not predict itself) and a query's scores are its history row times B.

The price is a dense items x items matrix: memory and time grow with the square and the cube of the
catalog. `max_items` (default 30,000, ~3.6 GB in float32) makes `fit` refuse larger catalogs with an
error that names the alternatives, instead of swapping a server to death. The inverse comes from a
Cholesky factorisation (G is symmetric positive definite) in float32 — half the time and memory of float64,
and the same ranking on Amazon Beauty (valid NDCG@10 0.0589 either way at l2=200) — with a float64 retry should
float32 lose definiteness.
Recent history items may weigh more (`history_decay`, as in item-kNN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.linalg as la

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.models.common import history_matrix, load_array, topk_dense


class CatalogTooLargeError(ValueError):
    """The model's memory grows with the square of the catalog and this catalog is over its limit."""


def _ease_weights(gram: np.ndarray) -> np.ndarray:
    """B = I - P diag(1/diag(P)) with P = gram⁻¹, in place: Cholesky (potrf) then its inverse (potri)."""
    potrf, potri = la.get_lapack_funcs(("potrf", "potri"), (gram,))
    c, info = potrf(gram, lower=False, overwrite_a=True)
    if info == 0:
        p, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: Gram matrix is not positive definite (LAPACK info {info})")
    p = np.triu(p)  # potri fills the upper triangle only
    p += np.triu(p, 1).T
    d = np.diag(p).copy()
    p /= -d[None, :]
    p[np.diag_indices(len(d))] = 0.0
    return p.astype(np.float32, copy=False)


class EASE:
    """Closed-form item autoencoder. Defaults: best on Beauty validation (NDCG@10 0.0601; fits in ~1 min there)."""

    name: ClassVar[str] = "ease"
    search_space: ClassVar[dict[str, list[Any]]] = {"l2": [60.0, 20.0, 200.0], "history_decay": [0.7, 1.0]}

    def __init__(self, l2: float = 60.0, history_decay: float = 0.7, max_items: int = 30_000) -> None:
        self.l2, self.history_decay, self.max_items = l2, history_decay, max_items
        self.weights: np.ndarray | None = None

    def fit(self, data: TrainData) -> Self:
        n = data.n_items
        if n > self.max_items:
            gb = n * n * 12 / 1e9  # peak: the Gram, its inverse and a symmetrising copy, float32
            raise CatalogTooLargeError(
                f"EASE needs a dense {n:,} x {n:,} matrix (~{gb:.0f} GB) and this catalog is over "
                f"max_items={self.max_items:,}; raise max_items if the memory is there, or use itemknn or als")
        x = data.matrix(binary=True)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n)] += self.l2
        try:
            self.weights = _ease_weights(gram.astype(np.float32))
        except np.linalg.LinAlgError:  # float32 lost definiteness (tiny l2, huge counts): redo in float64
            self.weights = _ease_weights(gram.astype(np.float64))
        return self

    def score(self, batch: QueryBatch) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError(f"{self.name} is not fitted")
        h = history_matrix(batch, self.weights.shape[0], decay=self.history_decay)
        return np.asarray(h @ self.weights, dtype=np.float32)

    def similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items that an item's presence predicts most strongly (its row of B)."""
        if self.weights is None:
            raise RuntimeError(f"{self.name} is not fitted")
        items = np.asarray(items, dtype=np.int64)
        ok = (items >= 0) & (items < self.weights.shape[0])
        rows = np.where(ok[:, None], self.weights[np.where(ok, items, 0)], -np.inf)
        return topk_dense(rows, k, exclude_self=items)

    def save(self, path: Path) -> None:
        if self.weights is None:
            raise RuntimeError(f"{self.name} is not fitted")
        write_config(path, self.name, {"l2": self.l2, "history_decay": self.history_decay,
                                       "max_items": self.max_items})
        np.save(path / "weights.npy", self.weights)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls(**read_config(path, cls.name))
        model.weights = load_array(path / "weights.npy")
        return model
