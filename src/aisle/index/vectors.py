"""Models that score by a dot product of a user vector and an item vector, and the MIPS -> L2 reduction.

Why a protocol: ANN retrieval needs nothing of a model but `score(batch) == user_vectors(batch) @
item_vectors().T`. SASRec, GRU4Rec and the two-tower model (last hidden state . item table) and the factor
models (user factors . item factors, plus a bias column) all have that shape, so one index serves them all.

Why the reduction: graph indexes (HNSW) are built for metric distances, and a dot product over vectors of
different norms is not one. Appending `sqrt(M^2 - |x|^2)` to every item (M = the largest item norm) and 0 to
every query turns the largest dot product into the smallest L2 distance (Bachrach et al. 2014), exactly.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from aisle.models.base import QueryBatch


@runtime_checkable
class VectorModel(Protocol):
    """A recommender whose `score(batch)` equals `user_vectors(batch) @ item_vectors().T`."""

    def user_vectors(self, batch: QueryBatch) -> np.ndarray:
        """(len(batch), dim) float32 query vectors."""
        ...

    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32 item vectors, row i = item index i."""
        ...


def as_vector_model(model: object) -> VectorModel | None:
    """`model` itself when it exposes user and item vectors, else None (it can only be scored exactly)."""
    return model if isinstance(model, VectorModel) else None


def augment_items(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """Items for L2 search that ranks like inner product: [x, sqrt(M^2 - |x|^2)], and M."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    top = float(norms.max()) if len(norms) else 0.0
    extra = np.sqrt(np.maximum(top - norms, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([x, extra[:, None]])), float(np.sqrt(top))


def augment_queries(queries: np.ndarray) -> np.ndarray:
    """Queries for the augmented items: [q, 0]."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return np.ascontiguousarray(np.hstack([q, np.zeros((len(q), 1), np.float32)]))


__all__ = ["VectorModel", "as_vector_model", "augment_items", "augment_queries"]
