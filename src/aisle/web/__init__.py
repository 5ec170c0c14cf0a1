"""The storefront (`/`) and the dashboard (`/dashboard`): static pages over the serving API, plus the few
read-only routes they need (`aisle.web.api.router`, mounted by `aisle.serve.app.create_app`)."""

from aisle.web.api import STATIC_PATH, router, static_files

__all__ = ["STATIC_PATH", "router", "static_files"]
