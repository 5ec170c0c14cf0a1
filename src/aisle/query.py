"""What a request asks for, in one shape for every surface: `Filters` (what may be shown) and `Query` (who asks,
with what history, in which context).

Why one module: recommendations, business rules and search used to carry two filter types that normalised
differently (one lower-cased, the other also stripped accents), so `category=Électronique` filtered
differently on `/users/{id}/recommendations` and on `/search`. Every comparison of a shopper's word with a
catalog value now goes through `fold`, here, once.
"""

from __future__ import annotations

import html
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2033": '"', "\u2032": "'",
                         "\u2044": "/", "\u2013": "-", "\u2014": "-", "\u00d7": "x"})


@lru_cache(maxsize=200_000)
def fold(text: str) -> str:
    """Lower case, unicode compatibility form without accents, one space between words: the one normalisation
    under which a request's category, brand or attribute value matches a catalog value."""
    text = unicodedata.normalize("NFKD", html.unescape(text).translate(_QUOTES)).translate(_QUOTES)
    if not text.isascii():  # an ASCII text has no combining marks to drop (most catalog text: skip the scan)
        text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.lower().split())


class FilterError(ValueError):
    """A request's filters contradict each other (the message says how)."""


@dataclass
class Filters:
    """A request's restrictions; every list means "any of". Categories match any level of an item's path;
    `attributes` maps an attribute key to wanted values; `available=True` keeps in-stock items only.

    Mutable on purpose: search's query understanding extracts filters from the words and relaxes them one
    by one when they leave nothing."""

    price_min: float | None = None
    price_max: float | None = None
    brands: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)
    available: bool | None = None
    exclude_brands: list[str] = field(default_factory=list)  # "not that brand" (a conversational refinement)

    @classmethod
    def of(cls, *, categories: list[str] | tuple[str, ...] | None = None,
           brands: list[str] | tuple[str, ...] | None = None, price_min: float | None = None,
           price_max: float | None = None, available: bool | None = None) -> Filters:
        """Filters from request parameters: blank values mean "no restriction" (`category=` filters nothing out),
        and a price range that cannot hold anything is an error rather than an empty answer."""
        if price_min is not None and price_max is not None and price_min > price_max:
            raise FilterError("price_min is above price_max")
        return cls(price_min=price_min, price_max=price_max, brands=[b for b in brands or () if b.strip()],
                   categories=[c for c in categories or () if c.strip()], available=available)

    def is_empty(self) -> bool:
        return (self.price_min is None and self.price_max is None and not self.brands and not self.categories
                and not any(self.attributes.values()) and self.available is None and not self.exclude_brands)

    def merged(self, other: Filters | None) -> Filters:
        """`self` (explicit, from the caller) overriding `other` (extracted from the query) field by field."""
        if other is None:
            return self
        return Filters(
            price_min=self.price_min if self.price_min is not None else other.price_min,
            price_max=self.price_max if self.price_max is not None else other.price_max,
            brands=self.brands or other.brands, categories=self.categories or other.categories,
            attributes={**other.attributes, **self.attributes},
            available=self.available if self.available is not None else other.available,
            exclude_brands=list(dict.fromkeys([*self.exclude_brands, *other.exclude_brands])))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Filters:
        return cls(**data)


@dataclass(frozen=True)
class Query:
    """One shopper's request as the recommendation core sees it: item indices, never ids.

    `history` is what the shopper did, oldest first (the bundle's copy of their past, then the events since the
    bundle, then the item on screen now as its last entry, a view); `types` gives each entry's event type; `live`
    how many of them arrived since the bundle was built (0: the bundle's precomputed answer still holds)."""

    user_idx: int = -1  # -1: unknown or erased
    history: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    types: tuple[str, ...] = ()
    live: int = 0
    filters: Filters = field(default_factory=Filters)
    exclude: tuple[int, ...] = ()  # item indices the caller does not want shown

    def last_action(self, item: int) -> str:
        """The shopper's latest event type on `item` ("view" when they never touched it)."""
        return self._last_actions.get(item, "view")

    @cached_property
    def _last_actions(self) -> dict[int, str]:
        # one pass, once per request: a list explains up to k items by their anchors, each asking this
        return dict(zip(self.history.tolist(), self.types, strict=True))


__all__ = ["FilterError", "Filters", "Query", "fold"]
