"""API keys for write and admin routes: `X-API-Key: KEY` or `Authorization: Bearer KEY`.

No keys configured means open routes (local use, the demo); `aisle serve` says so at start-up. Keys are
compared in constant time. Both ways of sending a key are declared as OpenAPI security schemes (through the
`Security` parameters of the dependencies), so a client generator knows them.

The key is checked before the body is read: `KeyedRoute` runs the check ahead of FastAPI's body parsing, so a
request without a key gets 401 whatever its body holds (a malformed body would otherwise answer 422 and tell an
unauthenticated caller about the schema). The dependencies stay on the routes for the OpenAPI declaration.
The dependencies are `async def` so FastAPI calls them inline, not in its thread pool.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

_KEY_HEADER = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False,
                           description="A write key (--api-key) for writes; an admin key for /admin/*.")
_BEARER = HTTPBearer(scheme_name="Bearer", auto_error=False, description="The same key as `Authorization: Bearer`.")


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
        raise HTTPException(401, "this route needs an API key (X-API-Key header or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        raise HTTPException(403, "invalid API key")


def _write_keys(request: Request) -> tuple[str, ...]:
    return request.app.state.services.settings.write_keys


def _admin_keys(request: Request) -> tuple[str, ...]:
    return request.app.state.services.settings.admin_or_write_keys


KeyHeader = Annotated[str | None, Security(_KEY_HEADER)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]


async def require_write(request: Request, _key: KeyHeader = None, _bearer: Bearer = None) -> None:
    _check(request, _write_keys(request))


async def require_admin(request: Request, _key: KeyHeader = None, _bearer: Bearer = None) -> None:
    _check(request, _admin_keys(request))


class KeyedRoute(APIRoute):
    """A route that checks the API key its `require_write`/`require_admin` dependency names before the body is
    read; other routes are left as they are."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        deps = {d.dependency for d in self.dependencies}
        keys = _admin_keys if require_admin in deps else _write_keys if require_write in deps else None
        if keys is None:
            return handler

        async def checked(request: Request) -> Response:
            _check(request, keys(request))
            return await handler(request)

        return checked


__all__ = ["KeyedRoute", "require_admin", "require_write"]
