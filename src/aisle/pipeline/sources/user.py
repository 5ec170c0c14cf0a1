"""User-model sources: a model that scores the whole catalog for a shopper's history (MF, EASE, a deep
sequential model) gives its top `per_source` items.

Serving runs them per request on small catalogs and reads per-user lists precomputed at train time on large
ones (`precompute`), because a full-catalog pass per request costs more than the whole rest of the request
there; an optimised retriever (ONNX encoder + ANN index, `aisle.optimize.serving`) answers `top_n` instead of
scoring every item.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from aisle.index.vectors import VectorModel, as_vector_model
from aisle.models.base import QueryBatch, TrainData
from aisle.pipeline.sources.base import CandidateSource, Contributions, Describe, SourceBatch, top_n
from aisle.query import Query


class UserModelSource(CandidateSource):
    kind: ClassVar[str] = "user"
    per_user: ClassVar[bool] = True
    scores_items: ClassVar[bool] = True

    def score_items(self, batch: SourceBatch, query: np.ndarray, item: np.ndarray) -> np.ndarray:
        """A dot product of the query's vector and each candidate's (every model here scores that way, and a
        serving retriever keeps the vector model it wraps), so a request pays one history encoding and a few
        hundred dot products, never a catalog pass; a model without vectors is scored in full and read at the
        pairs. Items the model was not fitted on (added to the catalog since) score 0."""
        query, item = np.asarray(query, np.int64), np.asarray(item, np.int64)
        out = np.zeros(len(item), np.float32)
        vectors = as_vector_model(self.model) or as_vector_model(getattr(self.model, "model", None))
        if vectors is not None:
            table = self._item_vectors(vectors)
            known = (item >= 0) & (item < len(table))
            users = vectors.user_vectors(batch.model_queries())
            out[known] = np.einsum("ij,ij->i", users[query[known]], table[item[known]])
        else:
            scores = self.model.score(batch.model_queries())
            known = (item >= 0) & (item < scores.shape[1])
            out[known] = scores[query[known], item[known]]
        return out

    def _item_vectors(self, vectors: VectorModel) -> np.ndarray:
        """The model's item table, computed once per model (SASRec builds it from its layers on every call)."""
        cached = self.__dict__.get("_item_table")
        if cached is None or cached[0] is not vectors:
            cached = (vectors, np.asarray(vectors.item_vectors(), np.float32))
            self.__dict__["_item_table"] = cached
        return cached[1]

    def candidates(self, batch: SourceBatch) -> Contributions:
        n = self.config.per_source
        if self.key in batch.precomputed:
            items, scores = batch.precomputed[self.key]
        elif hasattr(self.model, "top_n"):  # an aisle.index.Retriever: no full-catalog pass
            items, scores = self.model.top_n(batch.model_queries(), n)
        else:
            items, scores = top_n(self.model.score(batch.model_queries()), n)
        return Contributions.of_lists(items, scores)

    def precompute(self, data: TrainData, *, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        # a catalog smaller than `per_source` gives every item (top_n's width): a list longer than the catalog
        # failed `aisle train` with a shape error
        n = min(self.config.per_source, data.n_items)
        sequences = data.sequences()
        items = np.zeros((data.n_users, n), np.int32)
        scores = np.zeros((data.n_users, n), np.float32)
        for start in range(0, data.n_users, chunk):
            users = np.arange(start, min(start + chunk, data.n_users))
            top, values = top_n(self.model.score(QueryBatch(users, [sequences[u] for u in users])), n)
            items[users], scores[users] = top, values
        return items, scores

    def explain(self, item: int, anchor: int, query: Query, names: Describe) -> dict[str, Any]:
        return {"type": "personal", "text": "Popular with shoppers like you"}


class SequentialSource(UserModelSource):
    """A deep sequential model on the session (SASRec, GRU4Rec): a user source whose answer follows the order of
    what the shopper just did, and says so."""

    kind: ClassVar[str] = "sequential"
    models: ClassVar[tuple[str, ...] | None] = ("sasrec", "gru4rec")

    def explain(self, item: int, anchor: int, query: Query, names: Describe) -> dict[str, Any]:
        return {"type": "session", "text": "Picked for what you are browsing now"}


__all__ = ["SequentialSource", "UserModelSource"]
