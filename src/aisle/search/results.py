"""What a search returns: hits, facets and the result envelope (plain dataclasses, JSON-ready).

Facets are counted over the whole result set, not the page: category values at every level of the items' paths
(so a shopper can narrow "Outdoors" then "Footwear"), brands, and fixed price buckets (stable across queries, so
a UI can keep its price filter while the query changes).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aisle.search.catalog import Catalog
from aisle.search.query import Filters, ParsedQuery

PRICE_EDGES = (25.0, 50.0, 100.0, 200.0, 500.0)


@dataclass
class Hit:
    item_id: str
    score: float
    title: str
    brand: str | None
    price: float | None
    matched: dict[str, Any]  # fields with a lexical match, query words in the title, whether dense found it


@dataclass
class SearchResult:
    query: ParsedQuery
    hits: list[Hit]
    total: int
    page: int
    page_size: int
    facets: dict[str, list[dict[str, Any]]]
    filters: Filters  # what was applied in the end
    relaxed: list[str] = field(default_factory=list)
    took_ms: float = 0.0

    @property
    def did_you_mean(self) -> str | None:
        return self.query.did_you_mean

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query.to_json(), "did_you_mean": self.did_you_mean, "total": self.total,
                "page": self.page, "page_size": self.page_size, "hits": [asdict(h) for h in self.hits],
                "facets": self.facets, "filters": self.filters.to_json(), "relaxed": self.relaxed,
                "took_ms": round(self.took_ms, 2)}


def facet_counts(catalog: Catalog, rows: np.ndarray, size: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Category, brand and price-bucket counts over the result rows (the top `size` values of each)."""
    out: dict[str, list[dict[str, Any]]] = {
        "category": [{"value": v, "count": c} for v, c in catalog.category.counts(rows).most_common(size)],
        "brand": [{"value": v, "count": c} for v, c in catalog.brand.counts(rows).most_common(size)],
    }
    prices = catalog.price[rows]
    prices = prices[np.isfinite(prices)]
    edges = [0.0, *PRICE_EDGES, math.inf]
    buckets = []
    for lo, hi in itertools.pairwise(edges):
        n = int(((prices >= lo) & (prices < hi)).sum())
        if n:
            label = f"${lo:g}+" if hi == math.inf else f"${lo:g}-${hi:g}"
            buckets.append({"label": label, "min": lo, "max": None if hi == math.inf else hi, "count": n})
    out["price"] = buckets
    return out
