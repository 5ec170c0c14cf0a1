"""Request bodies of the write routes, and the one error body every route answers with.

A posted record keeps the same rules as a line of a file read by `aisle ingest` (`aisle.data.checks`: ids
non-empty without control characters, finite numbers, known event types, timestamps in the window), with the
same messages; a bad field is a 422 that names it. Types are strict where JSON has a type (a number is not a
string or a boolean), so the published schema says exactly what is accepted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from aisle.data import checks
from aisle.types import ITEMLESS_EVENT_TYPES, EventType


def _id(field: str, required: bool = True) -> Any:
    """An id field: the shared rules, and a JSON Schema pattern that states them."""
    # minLength and pattern are published, not enforced by pydantic: `check_id` enforces them with the messages
    # ingest gives
    return Annotated[str, Field(max_length=checks.ID_MAX_LENGTH,
                                json_schema_extra={"minLength": 1, "pattern": checks.ID_PATTERN}),
                     AfterValidator(lambda v: checks.check_id(field, v))]


def _number(field: str, message: Any = checks.not_finite) -> Any:
    return BeforeValidator(lambda v: v if v is None else checks.check_number(field, v, message))


def _timestamp(value: Any) -> Any:
    if value is not None and not isinstance(value, str):  # the schema says an ISO 8601 string
        raise ValueError(f"timestamp '{value}' is not an ISO 8601 date-time string")
    return value


UserId = _id("user_id")
ItemId = _id("item_id")
EventId = _id("event_id")
SessionId = _id("session_id")
RequestId = _id("request_id")


class EventIn(BaseModel):
    """One event. `timestamp` is ISO 8601 (`2026-01-02T03:04:05Z`; no offset means UTC; default: now) and must
    lie in the accepted window (see the README's validation rules); `item_id` is required except for `search`."""

    # the item rule in the published schema too: an item_id string, or a search
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["item_id"], "properties": {"item_id": {"type": "string"}}},
        {"properties": {"event_type": {"const": "search"}}}]})

    event_id: EventId | None = None
    user_id: UserId
    item_id: ItemId | None = None
    event_type: Annotated[EventType, BeforeValidator(checks.check_event_type)]
    timestamp: Annotated[datetime | None, BeforeValidator(_timestamp),
                         AfterValidator(lambda v: v if v is None else checks.check_timestamp(v))] = None
    session_id: SessionId | None = None
    value: Annotated[float | None, _number("value")] = None
    query: str | None = Field(default=None, max_length=1_000)
    request_id: RequestId | None = Field(default=None, description=(
        "The `request_id` of the served list this event answers (a click on a card, an add to cart from it): "
        "the event is attributed to that list in the impression log and in experiment reports."))

    @model_validator(mode="after")
    def _item_needed(self) -> EventIn:
        if self.item_id is None and self.event_type.value not in ITEMLESS_EVENT_TYPES:
            raise ValueError(f"event_type {self.event_type.value!r} needs an item_id ({checks.missing('item_id')})")
        return self

    def record(self) -> dict[str, Any]:
        ts = self.timestamp or datetime.now(UTC)
        return {"event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id,
                "event_type": self.event_type.value, "timestamp": ts.astimezone(UTC), "session_id": self.session_id,
                "value": self.value, "query": self.query, "request_id": self.request_id}


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: ItemId
    title: str = Field(default="", max_length=1_000)
    description: str = Field(default="", max_length=20_000)
    brand: str | None = Field(default=None, max_length=256)
    categories: list[str] = Field(default_factory=list, max_length=16)
    price: Annotated[float | None, Field(json_schema_extra={"minimum": 0}),
                     _number("price", checks.not_a_number)] = None
    currency: str = Field(default="USD", max_length=8)
    available: bool = Field(default=True, strict=True)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        return [c.strip() for c in v if c.strip()]

    @field_validator("price")
    @classmethod
    def _not_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError(checks.negative("price", v))
        return v

    def record(self) -> dict[str, Any]:
        d = self.model_dump()
        d["attributes"] = json.dumps(d["attributes"], sort_keys=True)
        d["created_at"] = None
        return d


class ItemsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn] = Field(min_length=1)


class ReloadIn(BaseModel):
    """`path`: a bundle folder to serve (a server of a bundle folder); `version`: a registry version to load and
    promote (a server following a registry). Neither: reload what is served, on every worker."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    version: str | None = Field(default=None, min_length=1, max_length=200)


class Issue(BaseModel):
    """One problem with a request: where (`["body", "events", 0, "user_id"]`, `["query", "k"]`), what, its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error answer (4xx, 5xx): a stable machine-readable `error` and a `detail`: for a 422 (`error` is
    "validation") the list of every problem found, each naming its place; otherwise a sentence."""

    error: Literal["unauthorized", "forbidden", "not_found", "method_not_allowed", "conflict", "too_large",
                   "validation", "unavailable", "not_ready", "internal", "error"]
    detail: list[Issue] | str


__all__ = ["ErrorOut", "EventIn", "EventsIn", "Issue", "ItemIn", "ItemsIn", "ReloadIn"]
