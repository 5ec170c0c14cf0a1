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

from aisle.models.base import QueryBatch, TrainData
from aisle.pipeline.sources.base import CandidateSource, Contributions, Describe, SourceBatch, top_n
from aisle.query import Query


class UserModelSource(CandidateSource):
    kind: ClassVar[str] = "user"
    per_user: ClassVar[bool] = True

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
