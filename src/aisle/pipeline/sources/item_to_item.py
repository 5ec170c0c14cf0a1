"""Item-to-item sources: a precomputed neighbour table per item (co-views, transitions, bought-together, text
similarity); a query sums the neighbours of its last `window` items, each weighted `decay ** distance from the
end`, so the very next event moves them, and every candidate keeps the history item it came from (its anchor),
which is what its explanation names.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from aisle.models.base import TrainData
from aisle.overlay import Layered
from aisle.pipeline.sources.base import CandidateSource, Contributions, Describe, SourceBatch
from aisle.query import Query

_VERB = {"purchase": "bought", "add_to_cart": "added", "favorite": "saved", "rating": "rated"}


def _top_stable(scores: np.ndarray, k: int) -> np.ndarray:
    """`np.argsort(-scores, kind="stable")[:k]` without sorting every item: the items tied at the k-th score are
    kept in index order, as the full stable sort keeps them."""
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    kth = np.partition(-scores, k - 1)[k - 1]
    pool = np.flatnonzero(-scores <= kth)
    return pool[np.argsort(-scores[pool], kind="stable")][:k]


class ItemToItemSource(CandidateSource):
    kind: ClassVar[str] = "i2i"
    #: (type, text) of the explanation of a candidate with an anchor; None: "Because you viewed/bought ... X"
    anchored: ClassVar[tuple[str, str] | None] = None
    #: (type, text) of a neighbour shown on the page of the item titled {title}
    on_item_page: ClassVar[tuple[str, str]] = ("similar", "Shoppers who viewed {title} also viewed this")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table_items = np.zeros((0, 0), np.int32)
        self.table_scores = np.zeros((0, 0), np.float32)
        # old item -> new items that resemble it; new item -> the old items it resembles (overlays: an upsert
        # copies what it changes, not every item placed since the bundle)
        self.added: Layered[int, tuple[np.ndarray, np.ndarray]] = Layered()
        self.own: Layered[int, tuple[np.ndarray, np.ndarray]] = Layered()

    @property
    def window(self) -> int:
        return self.spec.window or self.config.window

    @property
    def decay(self) -> float:
        return self.config.decay if self.spec.decay is None else self.spec.decay

    def _derive(self, data: TrainData) -> None:
        self.table_items, self.table_scores = neighbour_table(self.model, data.n_items, self.config.neighbours)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"items": self.table_items, "scores": self.table_scores}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.table_items, self.table_scores = arrays["items"], arrays["scores"]

    def candidates(self, batch: SourceBatch) -> Contributions:
        w = batch.window
        width = self.table_items.shape[1]
        weight = np.power(self.decay, w.distance)
        inside = (w.items < len(self.table_items)) & (w.distance < self.window)
        anchors = w.items[inside]
        items = self.table_items[anchors].ravel().astype(np.int64)
        scores = (self.table_scores[anchors] * weight[inside][:, None]).ravel()
        query = np.repeat(w.query[inside], width)
        anchor = np.repeat(anchors, width)
        last = np.repeat(w.distance[inside] == 0, width)
        if self.added:
            items, scores, query, anchor, last = self._with_added(batch, weight, (items, scores, query, anchor, last))
        ok = items >= 0
        score = scores[ok].astype(np.float64)
        return Contributions(query[ok], items[ok], score, anchor[ok], score * last[ok])

    def _with_added(self, batch: SourceBatch, weight: np.ndarray, rows: tuple[np.ndarray, ...]
                    ) -> tuple[np.ndarray, ...]:
        """The neighbours added at run time for catalog items new since the fit (cold start)."""
        w = batch.window
        extra = [(j, *self.added[int(item)]) for j, item in enumerate(w.items)
                 if int(item) in self.added and w.distance[j] < self.window]
        if not extra:
            return rows
        items, scores, query, anchor, last = rows
        return (np.concatenate([items, *[e[1].astype(np.int64) for e in extra]]),
                np.concatenate([scores, *[e[2] * weight[e[0]] for e in extra]]),
                np.concatenate([query, *[np.full(len(e[1]), w.query[e[0]]) for e in extra]]),
                np.concatenate([anchor, *[np.full(len(e[1]), w.items[e[0]]) for e in extra]]),
                np.concatenate([last, *[np.full(len(e[1]), w.distance[e[0]] == 0) for e in extra]]))

    def neighbours(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        if item < len(self.table_items):
            items, scores = self.table_items[item].astype(np.int64), self.table_scores[item]
        else:
            items, scores = self.own.get(item, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
        more = self.added.get(item)
        if more is not None:
            items, scores = np.concatenate([more[0], items]), np.concatenate([more[1], scores])
        keep = (items >= 0) & (scores > 0)
        return items[keep][:k], scores[keep][:k]

    def update(self, events: pl.DataFrame, n_items: int) -> bool:
        """Count-based models that can fold new events in (Markov transitions, bought-together baskets) refresh
        the neighbour rows of the items whose neighbours changed, at a cost in proportion to the new events; the
        others need a refit. True when the model counted something, even if no neighbour row moved (a pair's first
        basket is below `min_count` and its second may be in the next refresh: the count must be saved)."""
        add = getattr(self.model, "add_events", None)
        if add is None or events.is_empty():
            return False
        changed = add(events)
        if changed is None:
            return False
        changed = np.asarray(changed, np.int64)
        if len(changed):
            items, scores = neighbour_rows(self.model, changed, self.config.neighbours)
            self.table_items[changed], self.table_scores[changed] = items, scores
        return True

    def with_new_items(self, rows: list[int], similarity: np.ndarray, n_old: int) -> Self:
        """New items become neighbours of the old items they resemble most (`similarity`: one row per new item
        over every item), and get those items as their own neighbours for their item pages. Items placed by an
        earlier call keep their places (an item placed again moves), so successive upserts add up."""
        out = self.with_model(self.model)
        own: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # what changes: overlays on this source's maps
        added: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        for row in rows:  # an item placed again leaves its old neighbours first
            for j in self.own.get(row, empty)[0].tolist():
                r, s = added.get(j) or self.added.get(j, empty)
                keep = r != row
                added[j] = (r[keep], s[keep])
        extra: dict[int, tuple[list[int], list[float]]] = {}
        for row, sims in zip(rows, similarity, strict=True):
            sims = np.array(sims, np.float64)
            sims[row] = -np.inf
            sims[n_old:] = -np.inf  # new items are not each other's evidence
            top = _top_stable(sims, self.config.neighbours)
            top = top[np.isfinite(sims[top]) & (sims[top] > 0)]
            own[row] = (top.astype(np.int64), sims[top].astype(np.float32))
            for j, sim in zip(top.tolist(), sims[top].tolist(), strict=True):
                r_new, s_new = extra.setdefault(j, ([], []))
                r_new.append(row)
                s_new.append(sim)
        for j, (r_new, s_new) in extra.items():  # appended: the arrays an older copy reads stay as they are
            r, s = added.get(j) or self.added.get(j, empty)
            added[j] = (np.concatenate([r, np.asarray(r_new, np.int64)]),
                        np.concatenate([s, np.asarray(s_new, np.float32)]))
        out.own = self.own.with_items(own)
        out.added = self.added.with_items({j: v for j, v in added.items() if len(v[0])},
                                          remove=[j for j, v in added.items() if not len(v[0])])
        return out

    def explain(self, item: int, anchor: int, query: Query, names: Describe) -> dict[str, Any]:
        title = names.title(anchor) if anchor >= 0 else None
        if not title:
            return {"type": "session", "text": "Picked for what you are browsing now"}
        if self.anchored is None:
            kind, text = "because_you", f"Because you {_VERB.get(query.last_action(anchor), 'viewed')} {title}"
        else:
            kind, text = self.anchored[0], self.anchored[1].format(title=title)
        return {"type": kind, "text": text, "item_id": names.item_id(anchor)}

    def neighbour_reason(self, title: str) -> tuple[str, str]:
        return self.on_item_page[0], self.on_item_page[1].format(title=title)


class BoughtTogetherSource(ItemToItemSource):
    """Items bought in the same basket as something in the history (association rules)."""

    kind: ClassVar[str] = "bought_together"
    models: ClassVar[tuple[str, ...] | None] = ("fbt",)
    anchored: ClassVar[tuple[str, str] | None] = ("bought_together", "Often bought with {title}")
    on_item_page: ClassVar[tuple[str, str]] = ("bought_together", "Often bought with {title}")


class ContentSource(ItemToItemSource):
    """Items whose text (title, brand, category, description) reads like something in the history; it reads no
    events, so one fit serves every stage, and it is what new items are placed by."""

    kind: ClassVar[str] = "content"
    models: ClassVar[tuple[str, ...] | None] = ("content",)
    anchored: ClassVar[tuple[str, str] | None] = ("similar", "Similar to {title}")
    on_item_page: ClassVar[tuple[str, str]] = ("similar", "Similar to {title}")

    def item_vectors(self) -> np.ndarray | None:
        """The text vector of every fitted item (what new items are compared with)."""
        return getattr(self.model, "embeddings", None)


def neighbour_table(model: Any, n_items: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_items, k) neighbour indices (-1 padded) and the model's own similarity scores (0 for padding)."""
    emb = getattr(model, "embeddings", None)
    if isinstance(emb, np.ndarray) and emb.ndim == 2:
        from aisle.search.dense import DenseIndex

        vec = np.ascontiguousarray(emb, np.float32)
        empty = np.linalg.norm(vec, axis=1) == 0
        idx, sc = DenseIndex(vec).search_batch(vec, k + 1)
        idx, sc = np.asarray(idx, np.int64), np.asarray(sc, np.float32)
        bad = (idx < 0) | (idx == np.arange(n_items)[:, None]) | empty[np.clip(idx, 0, None)] | empty[:, None]
        sc = np.where(bad, -np.inf, sc)
        order = np.argsort(-sc, axis=1, kind="stable")[:, :k]
        idx, sc = np.take_along_axis(idx, order, 1), np.take_along_axis(sc, order, 1)
        ok = np.isfinite(sc) & (idx >= 0)
        return np.where(ok, idx, -1).astype(np.int32), np.where(ok, np.maximum(sc, 0.0), 0.0).astype(np.float32)
    return neighbour_rows(model, np.arange(n_items), k)


def neighbour_rows(model: Any, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour-table rows of `items` from a model's `similar` (-1 / 0 padding)."""
    idx = np.full((len(items), k), -1, np.int64)
    sc = np.full((len(items), k), -np.inf, np.float32)
    for start in range(0, len(items), 4096):
        found, values = model.similar(items[start:start + 4096], k)
        idx[start:start + len(found)], sc[start:start + len(found)] = found, values
    ok = np.isfinite(sc) & (idx >= 0)
    return np.where(ok, idx, -1).astype(np.int32), np.where(ok, np.maximum(sc, 0.0), 0.0).astype(np.float32)


__all__ = ["BoughtTogetherSource", "ContentSource", "ItemToItemSource", "neighbour_table"]
