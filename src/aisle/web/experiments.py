"""`/api/experiments`: the running A/B experiment, per arm, from the store's impression log and events.

The figures are `aisle.experiments.analysis.report` over what the store holds: impressions reach it within a
flush (`impressions_flush_s`) plus, with Redis, the impression stream's consumer lag; events once they are
acknowledged (memory state) or consumed (Redis). The worker asked flushes its own buffer first. Reading the
whole log is a scan, so an answer is kept for `REPORT_TTL_S` per app and (since, confidence): the dashboard polls
it.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from aisle.serve.errors import responses

REPORT_TTL_S = 5.0

router = APIRouter()


def _describe(svc: Any) -> dict[str, Any] | None:
    exp = svc.settings.experiment
    if exp is None:
        return None
    arms = []
    serving = svc.arms
    for arm in exp.arms:
        rt = serving.get(arm.name)
        arms.append({"name": arm.name, "weight": arm.weight, "bundle": str(arm.bundle) if arm.bundle else None,
                     "rules": arm.rules, "model_version": rt.version if rt is not None else None})
    return {"name": exp.name, "control": exp.control_arm, "arms": arms}


def _read(svc: Any, since: datetime | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    if svc.impressions is not None:
        svc.impressions.flush()
    with svc.sink.locked() as store:
        impressions, events = store.impressions(), store.events()
    if since is not None:
        impressions = impressions.filter(pl.col("timestamp") >= since)
        events = events.filter(pl.col("timestamp") >= since)
    return impressions, events


def _iso_only(value: Any) -> Any:
    """pydantic reads a number as seconds since the epoch; the published schema says an ISO 8601 date-time."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", value):
        raise ValueError(f"since {value!r} is not an ISO 8601 date-time (e.g. 2026-01-01T00:00:00Z)")
    return value


@router.get("/api/experiments", tags=["web"], responses=responses(422, 503))
async def experiments(request: Request,
                      since: Annotated[datetime | None, BeforeValidator(_iso_only), Query(description=(
                          "Only impressions and events from this time on (ISO 8601): the experiment's start, when "
                          "its arm names were used before."))] = None,
                      confidence: Annotated[float, Query(ge=0.5, lt=1.0)] = 0.95) -> dict[str, Any]:
    """The experiment in the settings (arms, weights, what serves each) and, per arm, click rate, add-to-cart rate,
    conversion and revenue per shopper session with intervals, and each arm against the control (difference,
    lift, p-value), from the store's impression log and events."""
    if since is not None and since.tzinfo is None:  # checked first: a bad request is a 422 whatever the server has
        raise HTTPException(422, "since needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    svc = request.app.state.services
    described = _describe(svc)
    if described is None:
        return {"experiment": None, "report": None,
                "note": "no experiment: add an [experiment] table with arms to the serve settings"}
    if svc.sink is None:
        raise HTTPException(503, "experiment reports read the impression log in the store: serve with --store")
    if not hasattr(request.app.state, "experiment_reports"):  # per app: a process may run several (tests do)
        request.app.state.experiment_reports = {}
    cache: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = request.app.state.experiment_reports
    key = (since, confidence)
    hit = cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < REPORT_TTL_S:
        return {**hit[1], "experiment": described}
    from aisle.experiments.analysis import report

    impressions, events = await run_in_threadpool(_read, svc, since)
    names = [a["name"] for a in described["arms"]]
    impressions = impressions.filter(pl.col("arm").is_in(names))
    prices = svc.runtime.catalog.select("item_id", "price") if svc.ready else None
    rep = report(impressions, events, confidence=confidence, control=described["control"]
                 if described["control"] in set(impressions["arm"].to_list()) else None, prices=prices)
    out = {"report": rep.to_dict(), "table": rep.table(), "impressions": impressions.height,
           "read_at": time.time()}
    cache[key] = (time.monotonic(), out)
    return {**out, "experiment": described}


__all__ = ["router"]
