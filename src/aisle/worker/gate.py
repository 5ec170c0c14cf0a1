"""The gate every candidate bundle passes before promotion: health checks on the saved folder, and (for a refit)
NDCG@10 on the newest slice of events next to the bundle being served.

Health is checked through the serving code itself (`Runtime` over the bundle loaded from disk, as a server would
load it): every configured source loaded, a non-empty trending list, non-empty recommendations for a sample of
shoppers (known and anonymous) and a search answer, and the p99 of those requests within the latency budget.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from aisle.bundle import Bundle
from aisle.config import Settings
from aisle.evaluate.protocol import build_queries, evaluate_queries
from aisle.models.base import EVENT_WEIGHTS, TrainData


def health(path: Path, settings: Settings, *, sample: int = 40, seed: int = 0) -> dict[str, Any]:
    """{check: {"ok": bool, "detail": str}} for the bundle saved at `path`."""
    from aisle.serve.runtime import Runtime

    checks: dict[str, Any] = {}
    try:
        bundle = Bundle.load(path, require_serving=True)
        runtime = Runtime(bundle, settings)
    except Exception as exc:
        return {"loads": {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}}
    pipe = bundle.pipeline
    assert pipe is not None
    expected = [s.key for s in pipe.config.sources]
    checks["sources"] = {"ok": pipe.source_keys == expected and len(expected) > 0,
                         "detail": ", ".join(pipe.source_keys)}
    trending = runtime.trending(10)
    checks["trending"] = {"ok": len(trending) > 0, "detail": f"{len(trending)} items"}
    rng = np.random.default_rng(seed)
    users = rng.choice(len(bundle.users), min(sample, len(bundle.users)), replace=False).tolist() \
        if len(bundle.users) else []
    ids = [str(bundle.users.ids[u]) for u in users] + ["__anonymous__"]
    took, empty = [], 0
    runtime.recommend(runtime.query(ids[0], [], False), 10)  # warm-up: first-call costs are not a request's
    for uid in ids:
        t0 = time.perf_counter()
        out = runtime.recommend(runtime.query(uid, [], False), 10)
        took.append((time.perf_counter() - t0) * 1000)
        empty += not out["items"]
    checks["recommendations"] = {"ok": empty == 0, "detail": f"{len(ids) - empty} of {len(ids)} non-empty"}
    if runtime.search is not None:
        titles = [t for t in runtime.cards["title"] if t][:5]
        hits = 0
        for title in titles:
            t0 = time.perf_counter()
            hits += bool(runtime.search.search(" ".join(title.split()[:2])).to_json()["hits"])
            took.append((time.perf_counter() - t0) * 1000)
        checks["search"] = {"ok": hits == len(titles), "detail": f"{hits} of {len(titles)} queries answered"}
    p99 = float(np.percentile(took, 99)) if took else 0.0
    budget = settings.worker.latency_budget_ms
    checks["latency"] = {"ok": p99 <= budget, "detail": f"p99 {p99:.1f} ms over {len(took)} requests "
                                                         f"(budget {budget:.0f} ms)"}
    return checks


def passed(checks: dict[str, Any]) -> bool:
    return all(c.get("ok") for c in checks.values())


def failures(checks: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {c.get('detail')}" for k, c in checks.items() if not c.get("ok"))


def holdout_cut(events: pl.DataFrame, *, n_events: int, days: float | None, cap: bool = True) -> Any:
    """The timestamp where the gate's hold-out starts among `events`: the last `days`, else the newest `n_events`
    (with `cap`, at most a fifth of them, so a candidate fitted without them still learns from most of the log)."""
    if events.is_empty():
        return None
    stamps = events["timestamp"].sort(descending=True)
    bound = stamps[max(events.height // 5, 1) - 1] if cap else stamps[-1]
    if days is not None:
        cut = events.select(pl.col("timestamp").max() - pl.duration(microseconds=int(days * 86_400e6))).item()
    else:
        cut = stamps[min(n_events, events.height) - 1]
    return max(cut, bound)


def ndcg_on_holdout(bundles: dict[str, Bundle], history: pl.DataFrame, targets: pl.DataFrame, *,
                    users: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """NDCG@10 (full ranking, history excluded) of each bundle's pipeline on the same hold-out shoppers and target
    items: the positive events of `targets`, for shoppers sampled from them, knowing their events in `history`.
    Targets are limited to items every bundle can rank, so both scores count the same hits."""
    positive = [t for t, w in EVENT_WEIGHTS.items() if w > 0]
    targets = targets.filter(pl.col("item_id").is_not_null() & pl.col("event_type").is_in(positive))
    rankable = None
    for b in bundles.values():
        assert b.pipeline is not None
        ids = set(b.items.ids[: b.pipeline.n_items].tolist())
        rankable = ids if rankable is None else rankable & ids
    targets = targets.filter(pl.col("item_id").is_in(sorted(rankable or set())))
    who = targets["user_id"].unique().sort()
    if len(who) > users:
        who = who.sample(users, seed=seed).sort()
    targets = targets.filter(pl.col("user_id").is_in(who.implode()))
    history = history.filter(pl.col("user_id").is_in(who.implode()))
    out: dict[str, dict[str, Any]] = {}
    for name, b in bundles.items():
        assert b.pipeline is not None
        vocab = TrainData(users=b.users, items=b.items, events=pl.DataFrame())
        hist = history.filter(pl.col("item_id").is_in(b.items.ids[: b.pipeline.n_items].tolist()))
        queries = build_queries(vocab, hist, targets)
        result = evaluate_queries(b.pipeline, queries, b.pipeline.n_items, ks=(10,))
        out[name] = {"ndcg@10": float(result.metrics.get("NDCG@10", 0.0)), "users": result.n_users,
                     "targets": result.n_targets}
    return out


__all__ = ["failures", "health", "holdout_cut", "ndcg_on_holdout", "passed"]
