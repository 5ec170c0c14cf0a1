"""A candidate-source kind written the way a store's engineer would add one: this file plus one registry entry.

"More from the brand you are looking at": the most popular items of the brand of each query's last item. It
wraps the `pop` registry model for its counts and builds its own per-brand lists from the catalog.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from aisle.models.base import TrainData
from aisle.pipeline.sources import CandidateSource, Contributions, Describe, SourceBatch
from aisle.query import Query


class SameBrandSource(CandidateSource):
    kind: ClassVar[str] = "same_brand"
    models: ClassVar[tuple[str, ...] | None] = ("pop",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.brand = np.zeros(0, np.int64)
        self.by_brand: dict[int, np.ndarray] = {}

    def _derive(self, data: TrainData) -> None:
        brands = data.catalog["brand"].to_list() if data.catalog is not None else [None] * data.n_items
        names = {b: i for i, b in enumerate(sorted({b for b in brands if b}))}
        self.brand = np.array([names.get(b, -1) if b else -1 for b in brands], np.int64)
        counts = np.asarray(self.model.counts, np.float64)
        for code in range(len(names)):
            members = np.flatnonzero(self.brand == code)
            self.by_brand[code] = members[np.argsort(-counts[members], kind="stable")][: self.config.per_source]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"brand": self.brand}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.brand = arrays["brand"]
        self.by_brand = {int(c): np.flatnonzero(self.brand == c)[: self.config.per_source]
                         for c in np.unique(self.brand[self.brand >= 0])}

    def candidates(self, batch: SourceBatch) -> Contributions:
        queries, items, anchors = [], [], []
        for q, history in enumerate(batch.model_histories):
            if not len(history) or self.brand[history[-1]] < 0:
                continue
            found = self.by_brand.get(int(self.brand[history[-1]]), np.zeros(0, np.int64))
            queries.append(np.full(len(found), q))
            items.append(found)
            anchors.append(np.full(len(found), history[-1]))
        if not queries:
            return Contributions.empty()
        item = np.concatenate(items).astype(np.int64)
        score = 1.0 / (1.0 + np.concatenate([np.arange(len(i)) for i in items]))
        return Contributions(np.concatenate(queries), item, score, np.concatenate(anchors).astype(np.int64), score)

    def explain(self, item: int, anchor: int, query: Query, names: Describe) -> dict[str, Any]:
        return {"type": "same_brand", "text": f"More from the maker of {names.title(anchor)}",
                "item_id": names.item_id(anchor)}
