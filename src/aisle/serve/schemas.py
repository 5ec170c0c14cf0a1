"""Request bodies of the write routes (validated by pydantic; a bad field is a 422 that names it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aisle.types import ITEMLESS_EVENT_TYPES, EventType

_ID = Field(min_length=1, max_length=256)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(default=None, max_length=256)
    user_id: str = _ID
    item_id: str | None = Field(default=None, max_length=256)
    event_type: EventType
    timestamp: datetime | None = None
    session_id: str | None = Field(default=None, max_length=256)
    value: float | None = None
    query: str | None = Field(default=None, max_length=1_000)

    @model_validator(mode="after")
    def _item_needed(self) -> EventIn:
        if self.item_id is None and self.event_type.value not in ITEMLESS_EVENT_TYPES:
            raise ValueError(f"event_type {self.event_type.value!r} needs an item_id")
        return self

    def record(self) -> dict[str, Any]:
        ts = self.timestamp or datetime.now(UTC)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return {"event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id,
                "event_type": self.event_type.value, "timestamp": ts.astimezone(UTC), "session_id": self.session_id,
                "value": self.value, "query": self.query}


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = _ID
    title: str = Field(default="", max_length=1_000)
    description: str = Field(default="", max_length=20_000)
    brand: str | None = Field(default=None, max_length=256)
    categories: list[str] = Field(default_factory=list, max_length=16)
    price: float | None = Field(default=None, ge=0)
    currency: str = Field(default="USD", max_length=8)
    available: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        return [c.strip() for c in v if c.strip()]

    def record(self) -> dict[str, Any]:
        import json

        d = self.model_dump()
        d["attributes"] = json.dumps(d["attributes"], sort_keys=True)
        d["created_at"] = None
        return d


class ItemsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn] = Field(min_length=1)


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = None


__all__ = ["EventIn", "EventsIn", "ItemIn", "ItemsIn", "ReloadIn"]
