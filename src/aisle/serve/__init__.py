"""The serving API: `create_app(settings, services)` over a bundle, live state in memory or Redis.

The two names load on first use: a process that needs only a part of this package (the event-stream consumer
needs `services` and `stream`) does not import the routes, the pipeline and torch at start-up (~3 s)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aisle.serve.app import create_app
    from aisle.serve.services import Services

__all__ = ["Services", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from aisle.serve.app import create_app

        return create_app
    if name == "Services":
        from aisle.serve.services import Services

        return Services
    raise AttributeError(f"module 'aisle.serve' has no attribute {name!r}")
