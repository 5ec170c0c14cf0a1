"""API keys for write and admin routes: `X-API-Key: KEY` or `Authorization: Bearer KEY`.

No keys configured means open routes (local use, the demo); `aisle serve` says so at start-up. Keys are
compared in constant time. The dependencies are `async def` so FastAPI calls them inline, not in its thread pool.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def _presented(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _check(request: Request, keys: tuple[str, ...]) -> None:
    if not keys:
        return
    key = _presented(request)
    if key is None:
        raise HTTPException(401, "this route needs an API key (X-API-Key header or Authorization: Bearer)")
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        raise HTTPException(403, "invalid API key")


async def require_write(request: Request) -> None:
    _check(request, request.app.state.services.settings.write_keys)


async def require_admin(request: Request) -> None:
    _check(request, request.app.state.services.settings.admin_or_write_keys)


__all__ = ["require_admin", "require_write"]
