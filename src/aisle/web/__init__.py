"""The storefront (`/`) and the dashboard (`/dashboard`): static pages over the serving API, plus the few
read-only routes they need (`aisle.web.api.router`, mounted by `aisle.serve.app.create_app`).

The names are loaded on first use: `aisle.web.api` imports the serving package, whose app imports this one, so an
eager import here made `import aisle.web.suggest` (which the serving runtime uses) fail when it came first."""

from typing import Any

__all__ = ["STATIC_PATH", "router", "static_files"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from aisle.web import api

        return getattr(api, name)
    raise AttributeError(f"module 'aisle.web' has no attribute {name!r}")
