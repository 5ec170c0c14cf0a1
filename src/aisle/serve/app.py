"""`create_app(settings, services)`: the FastAPI application.

One pure-ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on every request) enforces the body
size limit, times every request into the metrics under its route *template* (never the raw path, whose user
ids would explode label cardinality), stamps every answer with `X-Aisle-Worker` (pid) and `X-Aisle-Version` (the
bundle served) so a client can tell the workers behind a port apart, and `Server-Timing: app;dur=<ms>` (the time
from the request reaching the app to its answer starting, the standard header browsers' developer tools show), so a
client can tell the server's share of a slow answer from the time it waited in sockets and queues outside the app;
and turns any unexpected exception into a JSON 500 without a stack trace. Every error is one JSON body,
`aisle.serve.schemas.ErrorOut` (`{"error": ..., "detail": ...}`; `detail` lists the issues of a 422), with the
headers its status needs (Allow on a 405). The published OpenAPI states the server's limits (`k` up to `max_k`).
The storefront ("/"), the dashboard ("/dashboard"), their read-only helpers (/api/web/*) and their files (/web/*)
come from `aisle.web`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aisle import __version__
from aisle.config import Settings
from aisle.serve import quick
from aisle.serve.errors import STATUSES
from aisle.serve.errors import name as error_name
from aisle.serve.routes import MAX_K_MARK, router
from aisle.serve.services import NotReadyError, Services
from aisle.serve.sink import StoreUnavailableError
from aisle.web import STATIC_PATH, static_files
from aisle.web import router as web_router

log = logging.getLogger("aisle.serve")


def _json(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps({"error": error, "detail": detail}), status_code=status,
                    media_type="application/json", headers=headers)


# reads that do not look at the catalog skip the catalog version check; the shopper's reads (/users/{id}/...)
# make it in the same Redis round trip as their history read (`Services.shopper`)
_CATALOG_FREE = ("/health", "/ready", "/metrics", "/web/", "/openapi.json", "/docs", "/redoc", "/users/")


class ServeMiddleware:
    def __init__(self, app: ASGIApp, services: Services, quick_route: Any = None) -> None:
        self.app, self.services = app, services
        self.limit = services.settings.max_body_bytes
        self.quick_route = quick_route  # the recommendations route, which `aisle.serve.quick` may answer first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        started = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _json(413, "too_large", f"request body over {self.limit} bytes")(scope, receive, send)
                self._observe(scope, 413, t0)
                return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            # a body sent without a length (chunked) is counted as it arrives: past the limit the client gets its
            # 413 here, and the app sees a disconnect, whatever it answers to that is dropped
            nonlocal received, too_large, status, started
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    if not started:
                        await _json(413, "too_large", f"request body over {self.limit} bytes")(scope, receive, send)
                        status, started = 413, True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status, started
            if too_large:
                return
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                # which worker answered, serving which bundle: two header pairs, prebuilt at each load
                took = f"app;dur={(time.perf_counter() - t0) * 1000:.3f}".encode()
                message["headers"] = [*message.get("headers", ()), *self.services.identity, (b"server-timing", took)]
            await send(message)

        try:
            if scope.get("method") == "GET":
                if self.quick_route is not None:
                    response = await quick.answer(self.services, scope)
                    if response is not None:
                        scope["route"] = self.quick_route  # the metrics' name for it, as the router would set
                        await response(scope, limited_receive, tracking_send)
                        return
                if not scope.get("path", "").startswith(_CATALOG_FREE):
                    await self.services.catalog_fresh()  # upserts made through another worker are applied first
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            status = 500
            if not started:
                await _json(500, "internal", "internal server error")(scope, receive, send)
        finally:
            self._observe(scope, status, t0)

    def _observe(self, scope: Scope, status: int, t0: float) -> None:
        route = scope.get("route")
        name = getattr(route, "path", None) or "unmatched"
        self.services.metrics.observe(name, scope.get("method", ""), status, time.perf_counter() - t0)


def create_app(settings: Settings | None = None, services: Services | None = None, *, load: bool = True) -> FastAPI:
    """The API over `services` (built from `settings` when not given); loads the bundle at start-up if `load`."""
    if services is None:
        services = Services(settings or Settings())
    svc = services

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = []
        svc.metrics.watch_gc()
        if load and not svc.ready:
            try:
                await svc.reload()
            except Exception:
                log.exception("could not load the bundle at %s; /ready says why", svc.bundle_path)
        tasks.extend(svc.follow_tasks())  # the registry's current version (or --watch on a bundle folder)
        if svc.state.backend == "redis":
            tasks.append(asyncio.create_task(svc.poll_catalog()))
        if svc.stream is not None:
            fsync = await svc.stream.durability()
            if fsync is None:
                log.warning("Redis runs without AOF (appendonly no): acknowledged events wait in Redis memory until "
                            "the store has them, and a restart of Redis loses them; see the README, 'Serving'")
            if svc.settings.consume:
                svc.start_consumer()
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await svc.close()

    app = FastAPI(title="Aisle", version=__version__, lifespan=lifespan,
                  description="Search and recommendations for an online store: real-time, explained, hot-swappable.")
    app.state.services = svc
    app.include_router(router)
    app.include_router(web_router)  # the storefront at /, the dashboard at /dashboard, /api/web/* (aisle.web)

    app.mount(STATIC_PATH, static_files(), name="static")  # after the routes: /web/* is the files, nothing else

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        # a rule of aisle.data.checks raises ValueError(message): show its message as ingest does, without
        # pydantic's "Value error, " in front
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")).removeprefix("Value error, "),
                   "type": str(e.get("type"))} for e in exc.errors()]
        return _json(422, "validation", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        detail: Any = exc.detail
        if exc.status_code == 422 and not isinstance(detail, list):  # one shape for every 422: a list of issues
            detail = [{"loc": [], "msg": str(detail), "type": "value_error"}]
        error = "unavailable" if exc.status_code == 503 else error_name(exc.status_code)
        return _json(exc.status_code, error, detail, headers=exc.headers)

    @app.exception_handler(StoreUnavailableError)
    async def _unavailable(_request: Request, exc: StoreUnavailableError) -> Response:
        return _json(503, "unavailable", str(exc))

    @app.exception_handler(NotReadyError)
    async def _not_ready(_request: Request, exc: NotReadyError) -> Response:
        return _json(503, "not_ready", str(exc))

    def openapi() -> dict[str, Any]:
        """The generated schema with the server's own limits written in (`k` up to `settings.max_k`)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            for item in schema.get("paths", {}).values():
                for op in item.values():
                    for param in op.get("parameters", ()) if isinstance(op, dict) else ():
                        if param.get("schema", {}).pop(MAX_K_MARK, False):
                            param["schema"]["maximum"] = svc.settings.max_k
                    default_422 = op.get("responses", {}).get("422", {})
                    if "HTTPValidationError" in str(default_422):  # FastAPI's own 422: ours is ErrorOut
                        op["responses"]["422"] = {"description": STATUSES[422][1], "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    route = next(r for r in router.routes if getattr(r, "path", None) == quick.PATH)
    app.add_middleware(ServeMiddleware, services=svc, quick_route=route if svc.settings.quick_routes else None)
    return app


__all__ = ["ServeMiddleware", "create_app"]
