"""What the storefront and the dashboard need beyond the serving API, and the pages themselves.

`/api/web/*` reads the same `Services` as the API (`request.app.state.services`) and never writes: known
shoppers for the user switcher, item details, search-box suggestions, catalog and event statistics. The
storefront is served at `/`, the dashboard at `/dashboard`, their files under `/web/` (plain ES modules, no
build step, nothing from a CDN) by Starlette's `StaticFiles` (ETag, Last-Modified, HEAD, ranges), mounted by
`create_app`. Per-runtime indexes are rebuilt when the runtime changes (hot swap, upserts).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from aisle.serve.errors import responses
from aisle.types import EVENT_TYPES
from aisle.web.experiments import router as experiments_router
from aisle.web.suggest import Suggester, suggest_json

STATIC = Path(__file__).resolve().parent / "static"
STORE_STATS_TTL_S = 15.0
_SWITCHER_POOL = 400  # the longest histories the user switcher picks its shoppers from

router = APIRouter()
router.include_router(experiments_router)  # /api/experiments (aisle.web.experiments)


class _WebCache:
    """Indexes derived from one Runtime, each built on first use; replaced as a whole when the runtime changes."""

    def __init__(self, rt: Any) -> None:
        self.runtime = rt

    @property
    def suggester(self) -> Suggester:
        return self.runtime.suggester  # kept by the runtime: an upsert updates it rather than rebuilding it

    @cached_property
    def users(self) -> list[dict[str, Any]]:
        return _pick_users(self.runtime, 50)

    @cached_property
    def catalog(self) -> dict[str, Any]:
        return _catalog_stats(self.runtime)


def _services(request: Request) -> Any:
    return request.app.state.services


def _cache(request: Request) -> _WebCache:
    rt = _services(request).runtime
    cache: _WebCache | None = getattr(request.app.state, "aisle_web", None)
    if cache is None or cache.runtime is not rt:
        cache = _WebCache(rt)
        request.app.state.aisle_web = cache
    return cache


# ---- data for the pages --------------------------------------------------------------------------------


@router.get("/api/web/config", tags=["web"])
async def config(request: Request) -> dict[str, Any]:
    """What the storefront must know before its first call: whether event posts need a key, whether search works."""
    svc = _services(request)
    out: dict[str, Any] = {"write_key_required": bool(svc.settings.write_keys), "max_k": svc.settings.max_k,
                           "ready": svc.ready}
    if svc.ready:
        cache = _cache(request)
        out.update(model_version=svc.runtime.version, searchable=svc.runtime.search is not None,
                   categories=[c["value"] for c in cache.catalog["top_categories"][:10]])
    return out


@router.get("/api/web/users", tags=["web"], responses=responses(422, 503))
async def known_users(request: Request, k: Annotated[int, Query(ge=1, le=50)] = 12) -> dict[str, Any]:
    """Known shoppers to browse as: long histories, each with a different favourite category where possible."""
    cache = _cache(request)
    users = cache.users
    erased = await _services(request).state.erased_among([u["user_id"] for u in users])
    return {"users": [u for u, gone in zip(users, erased, strict=True) if not gone][:k]}


def _pick_users(rt: Any, k: int) -> list[dict[str, Any]]:
    hist = rt.bundle.histories
    if hist is None or not len(rt.bundle.users):
        return []
    lengths = hist.lengths()
    pool = np.lexsort((np.arange(len(lengths)), -lengths))[:_SWITCHER_POOL]
    picked: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    taken: set[str] = set()
    for u in pool:
        items, _types, _ts = hist.of(int(u))
        leaves = [rt.attrs.leaf_names[c] for c in rt.attrs.leaf[items] if c >= 0]
        top = Counter(leaves).most_common(1)[0][0] if leaves else None
        row = {"user_id": str(rt.bundle.users.ids[u]), "events": int(lengths[u]), "top_category": top}
        (picked if top not in taken else rest).append(row)
        taken.add(top)
        if len(picked) >= k:
            break
    return (picked + rest)[:k]


@router.get("/api/web/items/{item_id}", tags=["web"], responses=responses(404, 503))
async def item_detail(item_id: str, request: Request) -> dict[str, Any]:
    """One item's card plus its description and attributes (the product page)."""
    rt = _services(request).runtime
    row = rt.index.get(item_id)
    if row is None:
        raise HTTPException(404, f"no item {item_id!r} in the catalog")
    out = rt.card(row)
    rec = rt.item_record(row)
    attrs = rec.get("attributes")
    try:
        attributes = json.loads(attrs) if isinstance(attrs, str) and attrs else (attrs or {})
    except json.JSONDecodeError:
        attributes = {}
    out.update(description=rec.get("description") or "", attributes=attributes if isinstance(attributes, dict)
               else {}, model_version=rt.version)
    return out


@router.get("/api/web/suggest", tags=["web"], responses=responses(422, 503))
async def suggest(request: Request, q: Annotated[str, Query(max_length=200)] = "",
                  k: Annotated[int, Query(ge=1, le=20)] = 8) -> dict[str, Any]:
    """Completions of a partial query: categories, brands and products; a spelling fix when nothing completes."""
    cache = _cache(request)
    return suggest_json(cache.suggester, q, k, cache.runtime.search)


@router.get("/api/web/overview", tags=["web"], responses=responses(503))
async def overview(request: Request) -> dict[str, Any]:
    """Catalog statistics (from the serving catalog) and event statistics (the store when one is attached, else
    the per-user histories kept in the bundle, which the answer labels)."""
    svc = _services(request)
    cache = _cache(request)
    return {"catalog": cache.catalog, "events": await _event_stats(request.app.state, svc, cache.runtime)}


def _catalog_stats(rt: Any) -> dict[str, Any]:
    a = rt.attrs
    price = a.price[np.isfinite(a.price)]
    leaves = Counter(a.leaf_names[c] for c in a.leaf if c >= 0)
    brands = Counter(a.brand_names[c] for c in a.brand if c >= 0)
    return {"items": len(rt.item_ids), "available": int(np.sum(a.available)), "brands": len(a.brand_names),
            "categories": len(a.leaf_names), "users": rt.n_users,
            "price": ({"min": float(price.min()), "median": float(np.median(price)), "max": float(price.max())}
                      if len(price) else None),
            "top_categories": [{"value": v, "count": c} for v, c in leaves.most_common(12)],
            "top_brands": [{"value": v, "count": c} for v, c in brands.most_common(12)]}


async def _event_stats(state: Any, svc: Any, rt: Any) -> dict[str, Any]:
    if svc.sink is None:
        hist = rt.bundle.histories
        counts = hist.type_counts() if hist is not None else np.zeros(0)
        return {"source": "bundle", "note": f"last {svc.settings.history_length} events per user in the bundle",
                "events": int(counts.sum()), "users": rt.n_users,
                "events_by_type": {EVENT_TYPES[i]: int(n) for i, n in enumerate(counts) if n}}
    cached = getattr(state, "aisle_web_events", None)
    if cached is not None and time.monotonic() - cached[0] < STORE_STATS_TTL_S:
        return cached[1]

    def read() -> dict[str, Any]:
        with svc.sink.locked() as store:
            return store.stats().as_dict()

    try:
        out = {"source": "store", "path": str(svc.sink.path), **await run_in_threadpool(read)}
    except Exception as exc:  # a store that cannot be read must not break the dashboard
        out = {"source": "store", "path": str(svc.sink.path), "error": f"{type(exc).__name__}: {exc}"}
    state.aisle_web_events = (time.monotonic(), out)
    return out


# ---- the pages and their files -------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
async def storefront() -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> Response:
    return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})


STATIC_PATH = "/web"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _StaticFiles(StaticFiles):
    """The page files: `no-cache` (revalidated through the ETag, so a new version shows on the next load), and a
    path holding a control character (`/web/%00`) is a 404 like any missing file, not an error of the OS call."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if _CONTROL.search(path):
            raise HTTPException(404, "no such file")
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def static_files() -> StaticFiles:
    """The ASGI app that serves static/ (never outside it) under `STATIC_PATH`."""
    return _StaticFiles(directory=STATIC)


__all__ = ["STATIC", "STATIC_PATH", "router", "static_files"]
