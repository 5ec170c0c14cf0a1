"""A quicker way into the hottest route, `GET /users/{user_id}/recommendations`, for requests certainly valid.

Why: a recommendation costs a worker well under a millisecond of its own work, and FastAPI's per-request machinery
around it (solving the parameters through pydantic, the exception and routing layers) was a third of the worker's
CPU per request (py-spy under the closed loop, benchmarks/RESULTS.md). This route's parameters are a handful of
strings and numbers, so `ServeMiddleware` asks `answer` first: it reads the query string as Starlette does and,
when every parameter is one it can read without doubt (ASCII digits for `k` within 1..max_k, plain decimals for the
prices, short session ids, no repeated single-valued parameter), calls the route's own function
(`routes.recommend`) with the values FastAPI would have passed. Anything else returns None and the request takes
the FastAPI route: every 4xx and its message, and the published OpenAPI, stay FastAPI's. One route, one function
answering it; this only skips the validation of requests that need none.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response
from starlette.types import Scope

from aisle.query import FilterError, Filters
from aisle.serve import routes
from aisle.serve.services import NotReadyError, Services
from aisle.serve.sink import StoreUnavailableError

PATH = "/users/{user_id}/recommendations"
_PREFIX, _SUFFIX = "/users/", "/recommendations"
_SINGLE = frozenset(("k", "price_min", "price_max", "context_item", "session_id"))
_MANY = frozenset(("category", "brand", "exclude"))
_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,15})?")  # what `float` and pydantic read alike, never negative
_SESSION_MAX = 256  # routes.Session's max_length


def _user(scope: Scope) -> str | None:
    """The path's user id when the path is this route's (Starlette's `{user_id}`: one segment, not empty)."""
    path: str = scope["path"]
    if scope.get("root_path") or not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    user = path[len(_PREFIX):-len(_SUFFIX)]
    return user if user and "/" not in user else None


async def answer(svc: Services, scope: Scope) -> Response | None:
    """The route's answer to a GET of it whose parameters are certainly valid; None: let FastAPI take it."""
    user = _user(scope)
    if user is None:
        return None
    single: dict[str, str] = {}
    many: dict[str, list[str]] = {}
    for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        if name in _MANY:
            many.setdefault(name, []).append(value)
        elif name in _SINGLE:
            if name in single:  # which one FastAPI reads is its business
                return None
            single[name] = value
        # any other name: FastAPI ignores it too
    text = single.get("k", "10")
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not 1 <= int(text) <= svc.settings.max_k:
        return None
    prices: list[float | None] = []
    for name in ("price_min", "price_max"):
        value = single.get(name)
        if value is not None and not _DECIMAL.fullmatch(value):
            return None
        prices.append(None if value is None else float(value))
    session = single.get("session_id", "")
    if len(session) > _SESSION_MAX:
        return None
    try:
        filters = Filters.of(categories=many.get("category"), brands=many.get("brand"), price_min=prices[0],
                             price_max=prices[1])
        return await routes.recommend(svc, user, int(text), filters, single.get("context_item"),
                                      many.get("exclude", ()), session)
    except (FilterError, HTTPException, RequestValidationError, NotReadyError, StoreUnavailableError):
        return None  # FastAPI's route answers it again, with its own error handlers


__all__ = ["PATH", "answer"]
