"""The serving API: `create_app(settings, services)` over a bundle, live state in memory or Redis."""

from aisle.serve.app import create_app
from aisle.serve.services import Services

__all__ = ["Services", "create_app"]
