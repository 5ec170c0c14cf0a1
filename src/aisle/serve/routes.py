"""The HTTP routes. Thin on purpose: parse and validate, call `Services` / `Runtime`, return JSON-ready dicts.

Each route lists the error statuses it can answer (`aisle.serve.errors.responses`), so the published OpenAPI
says all of them; write and admin routes check their key before their body is read (`auth.KeyedRoute`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response

from aisle.data import checks
from aisle.query import FilterError, Filters
from aisle.serve.auth import KeyedRoute, require_admin, require_write
from aisle.serve.errors import READ, WRITE, responses
from aisle.serve.runtime import Runtime
from aisle.serve.schemas import EventsIn, ItemsIn, ReloadIn
from aisle.serve.services import Services
from aisle.serve.state import CONVERSATION_STEPS

router = APIRouter(route_class=KeyedRoute)

#: The OpenAPI extension that marks a `k` whose maximum is the server's `max_k` setting (`create_app` writes the
#: setting's value into the published schema, so the schema's limit is the server's).
MAX_K_MARK = "x-aisle-max-k"


def _ok(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """JSON straight from orjson: the hot read routes skip FastAPI's response validation (a third of a request).
    `headers` go in with the answer's own (cheaper than setting them on the built response)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json",
                    headers=headers)


def _list(svc: Services, surface: str, rt: Runtime, arm: str | None, out: dict[str, Any], *, user: str | None,
          session: str | None) -> Response:
    """A served list: its request id (body and `X-Request-Id`) and arm in the answer, its items in the impression
    log."""
    shown = [(c["item_id"], c.get("score")) for c in out["items"]]
    explored = bool(out["items"]) and "propensity" in out["items"][0]  # an exploring list ([explore])
    rid = svc.served(surface, rt, out, shown, arm=arm, user_id=user or None, session_id=session or None,
                     propensities=[c["propensity"] for c in out["items"]] if explored else None)
    return _ok(out, {"X-Request-Id": rid})

K = Annotated[int, Query(ge=1, description="How many items (at most the server's max_k).",
                         json_schema_extra={MAX_K_MARK: True})]
Categories = Annotated[list[str] | None, Query(description="Only these categories (any level of the path).")]
Brands = Annotated[list[str] | None, Query(description="Only these brands.")]
PriceMin = Annotated[float | None, Query(ge=0, description="Not above price_max (a 422 otherwise).")]
PriceMax = Annotated[float | None, Query(ge=0, description="Not below price_min (a 422 otherwise).")]
# plain strings, "" for none (as `q`): a nullable parameter with a length limit let the fuzzer send a repeated one,
# which the wire cannot tell from one value
Session = Annotated[str, Query(max_length=256, description=(
    "The shopper's session: recorded in the impression log, and what picks the experiment arm of a shopper "
    "without a user id."))]
Shopper = Annotated[str, Query(max_length=256, description=(
    "The shopper seeing the list: recorded in the impression log, and what picks their experiment arm."))]


async def services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request
    # (~10% of a worker's CPU under load, py-spy; benchmarks/RESULTS.md)
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]


def _filters(category: list[str] | None, brand: list[str] | None, price_min: float | None,
             price_max: float | None, *, available: bool | None = None) -> Filters:
    try:
        return Filters.of(categories=category, brands=brand, price_min=price_min, price_max=price_max,
                          available=available)
    except FilterError as exc:
        raise HTTPException(422, str(exc)) from None


def _k(svc: Services, k: int) -> int:
    if k > svc.settings.max_k:  # a validation error like any other: detail is a list naming the parameter
        raise RequestValidationError([{"loc": ("query", "k"), "msg": f"k must be at most {svc.settings.max_k}",
                                       "type": "less_than_equal"}])
    return k


# ---- reads ---------------------------------------------------------------------------------------------


@router.get("/users/{user_id}/recommendations", tags=["recommendations"], responses=responses(*READ))
async def recommendations(user_id: str, request: Request, k: K = 10, category: Categories = None,
                          brand: Brands = None, price_min: PriceMin = None, price_max: PriceMax = None,
                          context_item: Annotated[str | None, Query(description="The item on screen now.")] = None,
                          exclude: Annotated[list[str] | None, Query(description="Item ids not to show.")] = None,
                          session_id: Session = "") -> Response:
    """Recommended for you: the pipeline on the shopper's history plus everything they did since. The answer's
    `request_id` (also the `X-Request-Id` header) names this list: send it with the events it leads to."""
    # the services straight from the app, not through `Svc`: a sub-dependency FastAPI solves on every request
    svc: Services = request.app.state.services
    return await recommend(svc, user_id, _k(svc, k), _filters(category, brand, price_min, price_max), context_item,
                           exclude or (), session_id)


async def recommend(svc: Services, user_id: str, k: int, f: Filters, context_item: str | None,
                    exclude: Sequence[str], session_id: str) -> Response:
    """The recommendations route once its parameters are valid: what FastAPI's route and the quick way in for
    certainly valid requests (`aisle.serve.quick`) both call."""
    live, erased = await svc.shopper(user_id)
    arm, rt = svc.serving(user_id, session_id)
    query = rt.query(user_id, live, erased, context_item, filters=f, exclude=exclude)
    out = rt.recommend(query, k)
    out["user_id"] = user_id
    out["known_user"] = query.user_idx >= 0
    return _list(svc, "recommendations", rt, arm, out, user=user_id, session=session_id)


#: an RFC 3339 date-time (a space for the T and a missing offset, meaning UTC, are accepted too)
_INSTANT = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$"


def _instant(text: str) -> datetime:
    """A date-time query parameter as an aware UTC datetime; a 422 naming it when it is no real moment."""
    t = text.upper().replace("Z", "+00:00")
    t = t[:17] + "59" + t[19:] if t[17:19] == "60" else t  # a leap second reads as the second before it
    try:
        when = datetime.fromisoformat(t)
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        when.timestamp()
    except (ValueError, OverflowError, OSError):
        raise RequestValidationError([{"loc": ("query", "at"), "msg": f"at {text!r} is not a date-time",
                                       "type": "value_error"}]) from None
    return when.astimezone(UTC)


@router.get("/users/{user_id}/recently-viewed", tags=["recommendations"], responses=responses(*READ))
async def recently_viewed(user_id: str, svc: Svc, k: K = 10, session_id: Session = "") -> Response:
    """Recently viewed: the shopper's (or anonymous session's) viewed items, newest first, each once, in stock
    only; gone with the shopper when they are erased. Logged as shown, like every list."""
    k = _k(svc, k)
    live, erased = await svc.shopper(user_id)
    arm, rt = svc.serving(user_id, session_id)
    out = {"user_id": user_id, "items": rt.recently_viewed(user_id, live, erased, k), "model_version": rt.version}
    return _list(svc, "recently_viewed", rt, arm, out, user=user_id, session=session_id)


@router.get("/users/{user_id}/buy-again", tags=["recommendations"], responses=responses(*READ))
async def buy_again(user_id: str, svc: Svc, k: K = 10,
                    at: Annotated[str | None, Query(
                        pattern=_INSTANT, json_schema_extra={"format": "date-time"},
                        description="The moment to ask for (RFC 3339 date-time; no offset means UTC; default: now)."
                    )] = None,
                    session_id: Session = "",
                    ) -> Response:
    """Buy it again: the shopper's past purchases that are due again (consumables by their learned cadence);
    a durable good, or anything bought too recently, is not proposed. Logged as shown, like every list."""
    k = _k(svc, k)
    when = datetime.now(UTC) if at is None else _instant(at)
    live, erased = await svc.shopper(user_id)
    arm, rt = svc.serving(user_id, session_id)
    items = rt.buy_again(user_id, live, erased, k, int(when.timestamp() * 1_000_000))
    if items is None:
        raise HTTPException(503, "this bundle has no buy-again model (train it again with this Aisle)")
    out = {"user_id": user_id, "items": items, "at": when.isoformat(timespec="seconds"), "model_version": rt.version}
    return _list(svc, "buy_again", rt, arm, out, user=user_id, session=session_id)


@router.get("/items/{item_id}/similar", tags=["recommendations"], responses=responses(*READ))
async def similar(item_id: str, svc: Svc, k: K = 10, user: Shopper = "", session_id: Session = "") -> Response:
    """Similar items (content and co-viewing neighbours); an unknown item gets trending items instead."""
    arm, rt = svc.serving(user, session_id)
    out = rt.neighbours(item_id, _k(svc, k), ("content", "itemknn", "markov"))
    out = out or {"item": None, "items": rt.trending(k), "fallback": "trending", "model_version": rt.version}
    return _list(svc, "similar", rt, arm, out, user=user, session=session_id)


@router.get("/items/{item_id}/bought-together", tags=["recommendations"], responses=responses(*READ))
async def bought_together(item_id: str, svc: Svc, k: K = 10, user: Shopper = "", session_id: Session = ""
                          ) -> Response:
    """Frequently bought together (association rules), then co-viewed items when there are too few rules."""
    arm, rt = svc.serving(user, session_id)
    out = rt.neighbours(item_id, _k(svc, k), ("fbt", "itemknn"))
    out = out or {"item": None, "items": rt.trending(k), "fallback": "trending", "model_version": rt.version}
    return _list(svc, "bought_together", rt, arm, out, user=user, session=session_id)


@router.get("/trending", tags=["recommendations"], responses=responses(*READ))
async def trending(svc: Svc, k: K = 10, category: Categories = None, brand: Brands = None,
                   price_min: PriceMin = None, price_max: PriceMax = None, user: Shopper = "",
                   session_id: Session = "") -> Response:
    arm, rt = svc.serving(user, session_id)
    out = {"items": rt.trending(_k(svc, k), _filters(category, brand, price_min, price_max)),
           "model_version": rt.version}
    return _list(svc, "trending", rt, arm, out, user=user, session=session_id)


@router.get("/search", tags=["search"], responses=responses(*READ))
async def search(svc: Svc, q: Annotated[str, Query(max_length=500, description="The shopper's query.")] = "",
                 category: Categories = None, brand: Brands = None, price_min: PriceMin = None,
                 price_max: PriceMax = None,
                 sort: Literal["relevance", "price_asc", "price_desc", "popularity"] = "relevance",
                 page: Annotated[int, Query(ge=1, le=1000)] = 1, page_size: Annotated[int, Query(ge=1, le=100)] = 20,
                 user: Annotated[str | None, Query(description=(
                     "Personalise for this shopper (and log the results as shown to them)."))] = None,
                 session_id: Session = "",
                 conversation: Annotated[str | None, Query(
                     min_length=1, max_length=checks.ID_MAX_LENGTH, pattern=checks.ID_PATTERN,
                     description="A search conversation: `q` refines this conversation's last search (\"cheaper\", "
                                 "\"in blue\", \"without Acme\", \"more like the second one\") or starts a new "
                                 "one; the answer's `refinement` says how it was understood.")] = None,
                 undo: Annotated[bool, Query(
                     description="With `conversation`: go back one step (q is ignored).")] = False,
                 step: Annotated[int | None, Query(ge=0, le=CONVERSATION_STEPS, description=(
                     "With `conversation`: show this step of the conversation again (another page, facet or sort of "
                     "it) instead of a new turn; later steps are dropped."))] = None,
                 ) -> Response:
    """Query understanding, hybrid retrieval, learned rerank, facets; optionally personalised; every hit says why
    it is there (`explanation`). With `conversation`, a conversation whose turns refine the last search."""
    arm, rt = svc.serving(user, session_id)
    if rt.search is None:
        raise HTTPException(503, "this bundle has no search index (train it without --no-search)")
    filters = _filters(category, brand, price_min, price_max,
                       available=True if svc.settings.rules.only_available else None)
    affinity = None
    if user:
        live, erased = await svc.state.history(user)
        affinity = rt.affinity(rt.query(user, live, erased))
    if conversation is not None:
        return await _conversation_turn(svc, rt, arm, conversation, q, undo=undo, step=step, user=user,
                                        session_id=session_id, filters=filters, sort=sort, page=page,
                                        page_size=page_size, affinity=affinity)
    if undo or step is not None:
        name = "undo" if undo else "step"
        raise RequestValidationError([{"loc": ("query", name), "msg": f"{name} needs a conversation",
                                       "type": "value_error"}])
    body, shown = rt.search_body(q, filters=filters, sort=sort, page=page, page_size=page_size, affinity=affinity)
    served: dict[str, Any] = {}
    rid = svc.served("search", rt, served, list(shown), arm=arm, user_id=user or None, session_id=session_id or None,
                     query=q, offset=(page - 1) * page_size)
    tail = b',"request_id":' + orjson.dumps(rid) + b',"arm":' + orjson.dumps(arm) + b"}"
    return Response(body[:-1] + tail, media_type="application/json", headers={"X-Request-Id": rid})


async def _conversation_turn(svc: Services, rt: Runtime, arm: str | None, conversation: str, q: str, *, undo: bool,
                             step: int | None, user: str | None, session_id: str, filters: Filters, sort: str,
                             page: int, page_size: int, affinity: dict[str, dict[str, float]] | None) -> Response:
    """One turn of a search conversation: its steps from the live state, refined, kept again; the hits
    shown are logged like any search's."""
    from aisle.serve.conversation import converse

    steps = await svc.state.get_conversation(conversation)
    body, steps = converse(rt, steps, q, undo=undo, filters=filters, sort=sort, page=page,
                           page_size=page_size, affinity=affinity, step=step)
    await svc.state.put_conversation(conversation, steps, user)
    body["refinement"]["conversation"] = conversation
    shown = [(h["item_id"], h.get("score")) for h in body.get("hits", [])]
    rid = svc.served("search", rt, body, shown, arm=arm, user_id=user or None, session_id=session_id or None,
                     query=q, offset=(page - 1) * page_size)
    return _ok(body, {"X-Request-Id": rid})


# ---- writes --------------------------------------------------------------------------------------------


@router.post("/events", tags=["events"], dependencies=[Depends(require_write)], responses=responses(*WRITE))
async def post_events(body: EventsIn, svc: Svc) -> dict[str, Any]:
    """A batch of events; repeats (same event_id, or same user/item/type/time) are counted and ignored.

    With a store, a 2xx means the accepted events are durable: in the store (no Redis) or in the Redis event
    stream that consumers write to the store. A 503 means none of this batch's new events were taken: send it
    again."""
    if len(body.events) > svc.settings.max_batch:
        raise HTTPException(413, f"at most {svc.settings.max_batch} events per request")
    return await svc.ingest([e.record() for e in body.events])


@router.put("/items", tags=["catalog"], dependencies=[Depends(require_write)], responses=responses(*WRITE))
async def put_items(body: ItemsIn, svc: Svc) -> dict[str, Any]:
    """Insert or replace catalog items; new ones are searchable and recommendable (cold start) on return."""
    if len(body.items) > svc.settings.max_batch:
        raise HTTPException(413, f"at most {svc.settings.max_batch} items per request")
    return await svc.upsert_items([i.record() for i in body.items])


@router.delete("/users/{user_id}", tags=["users"], dependencies=[Depends(require_write)],
                responses=responses(401, 403, 422, 503))
async def delete_user(user_id: str, svc: Svc) -> dict[str, Any]:
    """Erase a shopper: live state, stored events, and the bundle's copy of their history from now on."""
    return await svc.erase(user_id)


# ---- operations ----------------------------------------------------------------------------------------


_HEALTH = {"type": "object", "required": ["status", "pid", "version", "registry_version", "loaded_at"],
           "properties": {"status": {"type": "string"}, "pid": {"type": "integer"},
                          "version": {"type": ["string", "null"]}, "registry_version": {"type": ["string", "null"]},
                          "loaded_at": {"type": ["number", "null"]}, "load_error": {"type": "string"}}}


@router.get("/health", tags=["operations"], responses={
    200: {"description": "The process is alive; which bundle this worker serves.",
          "content": {"application/json": {"schema": _HEALTH}}}})
async def health(svc: Svc) -> Response:
    """Liveness, and what this worker serves: its `pid`, the bundle's `version`, the registry's name for it
    (`registry_version`, when following a registry), `loaded_at` (unix seconds), and `load_error` when the last
    load failed (the previous bundle keeps serving)."""
    return _ok(svc.describe())


_READY = {"type": "object", "required": ["ready", "state", "state_ok"],
          "properties": {"ready": {"type": "boolean"}, "state": {"type": "string"}, "state_ok": {"type": "boolean"},
                         "model_version": {"type": "string"}, "error": {"type": "string"}}}


@router.get("/ready", tags=["operations"], responses={
    200: {"description": "A bundle is loaded and the live state answers.",
          "content": {"application/json": {"schema": _READY}}},
    503: {"description": "Not ready: no bundle loaded (`error` says why) or the live state does not answer.",
          "content": {"application/json": {"schema": _READY}}}})
async def ready(svc: Svc) -> Response:
    ok_state = await svc.state.ping()
    body: dict[str, Any] = {"ready": svc.ready and ok_state, "state": svc.state.backend, "state_ok": ok_state}
    if svc.ready:
        body["model_version"] = svc.runtime.version
    elif svc.last_error:
        body["error"] = svc.last_error
    return Response(orjson.dumps(body), status_code=200 if body["ready"] else 503, media_type="application/json")


@router.get("/metrics", tags=["operations"], response_class=PlainTextResponse, responses={
    200: {"description": "Prometheus text exposition format.",
          "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(svc: Svc) -> Response:
    """Request counts and latencies per route template, for Prometheus."""
    from prometheus_client import CONTENT_TYPE_LATEST

    body = svc.metrics.render()
    if svc.stream is not None:  # the event stream's lag and throughput, fleet-wide (kept in Redis)
        try:
            body += await svc.stream.prometheus()
        except Exception as exc:  # Redis down: the request metrics still answer
            body += f"# aisle_stream_* unavailable: {type(exc).__name__}\n".encode()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/api/stats", tags=["operations"])
async def stats(svc: Svc) -> dict[str, Any]:
    """For a dashboard: traffic and latency of the last minute, the bundle, the catalog, the offline report."""
    out: dict[str, Any] = {"traffic": svc.metrics.snapshot(), "state": svc.state.backend,
                           "workers": svc.settings.workers}
    if svc.ready:
        rt = svc.runtime
        m = rt.bundle.manifest
        out["bundle"] = {"path": str(svc.bundle_path), "version": rt.version, "created_at": m.get("created_at"),
                         "data_fingerprint": m.get("data_fingerprint"), "aisle": m.get("aisle"),
                         "models": list(m.get("models", {})), "parts": list(m.get("parts", {})),
                         "loaded_at": rt.loaded_at, "metrics": m.get("metrics", {})}
        hist = rt.bundle.histories
        out["catalog"] = {"items": len(rt.item_ids), "bundle_items": len(rt.bundle.items),
                          "upserted": len(svc.upserts), "catalog_version": svc.catalog_version,
                          "users": rt.n_users, "bundle_history_events": hist.total if hist else 0,
                          "searchable": rt.search is not None, "online_scoring": rt.online,
                          "search_encoder": rt.search.encoder_name if rt.search is not None else None}
        out["offline_report"] = rt.bundle.report
    return out


@router.post("/admin/reload", tags=["operations"], dependencies=[Depends(require_admin)],
             responses=responses(400, 401, 403, 404, 409, 413, 422, 500))
async def reload(svc: Svc, body: ReloadIn | None = None) -> dict[str, Any]:
    """Reload on every worker of every replica: this worker loads (in a thread; the previous bundle answers until
    one reference swap), then, with Redis state, tells every other worker to do the same. A server following a
    registry reloads the current version, or with `version` loads that version here, promotes it in the registry
    only once it loaded, and tells the others. The answer says what was requested and that this worker loaded
    it; a failure (500) leaves the previous bundle serving everywhere and the registry unchanged."""
    from pathlib import Path

    from aisle.bundle import serving_problem
    from aisle.registry import RegistryError

    path = Path(body.path) if body and body.path else None
    version = body.version if body else None
    if svc.registry is not None:
        if path is not None:
            raise HTTPException(409, f"this server follows the registry {svc.registry.root}: publish the bundle "
                                     f"(aisle bundles publish {path}) and reload with its version")
        try:
            target = svc.registry.path(version) if version else svc.registry.current_path()
        except RegistryError as exc:
            raise HTTPException(404, str(exc)) from None
        if target is None:
            raise HTTPException(409, f"the registry {svc.registry.root} has no current version yet")
    else:
        if version is not None:
            raise HTTPException(409, f"this server serves the bundle folder {svc.bundle_path}, not a registry: "
                                     "reload with a path")
        if path is not None and not (path / "manifest.json").exists():
            raise HTTPException(404, f"{path}: not an Aisle bundle (no manifest.json)")
        target = path or svc.bundle_path
    problem = serving_problem(target)
    if problem is not None:  # a model bundle would be swapped in and "serve" trending: keep the one serving
        raise HTTPException(409, f"reload refused, the previous bundle keeps serving: {problem}")
    try:
        return await svc.reload_everywhere(path, version=version)
    except Exception as exc:
        what = f"version {version}" if version else str(target)
        raise HTTPException(500, f"reload of {what} failed on worker {os.getpid()}, the previous bundle "
                                 f"keeps serving: {type(exc).__name__}: {exc}") from None
