"""The data model: items, users and events, in one place.

Two views of the same model live here. The frozen dataclasses are for code that handles one record at a
time (an API request, a test); the Polars schemas are what readers produce and the store keeps, because
every bulk path (ingest, splits, training) is columnar. `item_row`/`event_row` convert between them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import polars as pl

ItemId = str
UserId = str


class EventType(StrEnum):
    """What a shopper did. The funnel order (view < click < add_to_cart < purchase) is the value order."""

    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    RATING = "rating"
    SEARCH = "search"
    FAVORITE = "favorite"  # wishlist / "collect" (Tmall, JData): intent without a purchase


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)

#: Event types that need no item (a search names a query instead).
ITEMLESS_EVENT_TYPES: frozenset[str] = frozenset({EventType.SEARCH.value})


@dataclass(frozen=True, slots=True)
class Item:
    """A catalog entry. `categories` is a path from the root, e.g. ("Outdoors", "Footwear", "Hiking boots"),
    or, for catalogs without a tree (MovieLens genres), an unordered set of labels."""

    item_id: ItemId
    title: str = ""
    description: str = ""
    brand: str | None = None
    categories: tuple[str, ...] = ()
    price: float | None = None
    currency: str = "USD"
    available: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class User:
    """A shopper; `attributes` holds whatever the store knows (segment, age band, ...)."""

    user_id: UserId
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a shopper did. `value` is the rating for ratings, the quantity or amount otherwise.

    `event_id` is optional: without it, the natural key (user, item, type, timestamp) identifies the event,
    which is what makes re-ingesting a file idempotent.
    """

    user_id: UserId
    item_id: ItemId | None
    event_type: EventType
    timestamp: datetime
    event_id: str | None = None
    session_id: str | None = None
    value: float | None = None
    query: str | None = None
    request_id: str | None = None


# ---- columnar schemas (what readers return and the store keeps) ----------------------------------

TIME = pl.Datetime("us", "UTC")

ITEM_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "description": pl.String(),
    "brand": pl.String(),
    "categories": pl.List(pl.String()),
    "price": pl.Float64(),
    "currency": pl.String(),
    "available": pl.Boolean(),
    "attributes": pl.String(),  # JSON object text: portable across Parquet, DuckDB and the API
    "created_at": TIME,
}

USER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "attributes": pl.String(),  # JSON object text
}

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "user_id": pl.String(),
    "item_id": pl.String(),
    "event_type": pl.String(),
    "timestamp": TIME,
    "session_id": pl.String(),
    "value": pl.Float64(),
    "query": pl.String(),
    "request_id": pl.String(),  # the served list (IMPRESSION_SCHEMA) this event answers, when the client sent it
}

#: What a served list showed, one row per shown item (long format): what off-policy evaluation, experiment reports
#: and a ranker learned from impressions read, whether the log came from the API or from the shopper simulator.
#: `propensity` is the probability that the serving policy put this item at this position (1.0 for a deterministic
#: policy); `surface` names the route (recommendations, similar, bought_together, trending, search, ...); `arm` is
#: the experiment arm the shopper was assigned to (null outside experiments). Events posted with a `request_id`
#: are attributed to the list it names.
IMPRESSION_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "timestamp": TIME,
    "user_id": pl.String(),
    "session_id": pl.String(),
    "surface": pl.String(),
    "item_id": pl.String(),
    "position": pl.Int32(),  # 1-based
    "score": pl.Float64(),
    "propensity": pl.Float64(),
    "model_version": pl.String(),
    "arm": pl.String(),
    "query": pl.String(),
}


def conform(df: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Select `schema`'s columns in order, adding missing ones as nulls and casting the rest.

    Readers build frames with whatever columns their format has; this gives every table one shape.
    """
    exprs = []
    for name, dtype in schema.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(exprs)


def empty_frame(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


def items_frame(items: Sequence[Item]) -> pl.DataFrame:
    """Dataclasses -> ITEM_SCHEMA frame (for API upserts and tests)."""
    rows = [
        {
            "item_id": it.item_id,
            "title": it.title,
            "description": it.description,
            "brand": it.brand,
            "categories": list(it.categories),
            "price": it.price,
            "currency": it.currency,
            "available": it.available,
            "attributes": json.dumps(dict(it.attributes), sort_keys=True),
            "created_at": it.created_at,
        }
        for it in items
    ]
    return pl.DataFrame(rows, schema=ITEM_SCHEMA) if rows else empty_frame(ITEM_SCHEMA)


def events_frame(events: Sequence[Event]) -> pl.DataFrame:
    """Dataclasses -> EVENT_SCHEMA frame (for API ingestion and tests)."""
    rows = [
        {
            "event_id": e.event_id,
            "user_id": e.user_id,
            "item_id": e.item_id,
            "event_type": str(e.event_type),
            "timestamp": e.timestamp,
            "session_id": e.session_id,
            "value": e.value,
            "query": e.query,
            "request_id": e.request_id,
        }
        for e in events
    ]
    return pl.DataFrame(rows, schema=EVENT_SCHEMA) if rows else empty_frame(EVENT_SCHEMA)
