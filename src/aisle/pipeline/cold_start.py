"""How much a catalog item added since the fit resembles every other item: what places it among candidates
before anyone has touched it (cold start).

By the content source's text vectors when the pipeline has one (the same encoder embeds the new item's text),
else by the search index's item vectors, else by shared leaf category and brand, so a new product is shown next
to the products it is most like whatever the bundle was built with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from aisle.pipeline.core import Pipeline
from aisle.pipeline.sources import ContentSource
from aisle.rules import ItemAttributes


def new_item_similarity(pipeline: Pipeline, rows: list[int], new_items: pl.DataFrame, index: Mapping[str, int],
                        attrs: ItemAttributes, *, embedder: Any = None, search: Any = None) -> np.ndarray:
    """(len(rows), len(index)) similarity of each new item (catalog row `rows[i]`, record `new_items[i]`) to every
    item; -inf: unrelated."""
    n = len(index)
    source = pipeline.cold_start_source()
    vectors = source.item_vectors() if isinstance(source, ContentSource) else None
    if vectors is not None and embedder is not None:
        from aisle.models.content import item_texts

        new = embedder.embed_texts(item_texts(new_items, len(rows)))
        return np.pad(new @ vectors.T, ((0, 0), (0, n - vectors.shape[0])), constant_values=-np.inf)
    indexed = search.item_vectors() if search is not None else None
    if indexed is not None:
        ids, item_vectors = indexed
        new = search.embed_items(new_items)
        if new is not None:
            out = np.full((len(rows), n), -np.inf)
            at = np.array([index.get(i, -1) for i in ids])
            out[:, at[at >= 0]] = (new @ item_vectors.T)[:, at >= 0]
            return out
    same_leaf = (attrs.leaf[None, :] == attrs.leaf[rows][:, None]) & (attrs.leaf[rows][:, None] >= 0)
    same_brand = (attrs.brand[None, :] == attrs.brand[rows][:, None]) & (attrs.brand[rows][:, None] >= 0)
    popularity = np.pad(pipeline.popularity, (0, max(0, n - len(pipeline.popularity))))[:n]
    return np.where(same_leaf, 0.5 + 0.25 * same_brand + 0.1 * popularity[None, :], -np.inf)


__all__ = ["new_item_similarity"]
