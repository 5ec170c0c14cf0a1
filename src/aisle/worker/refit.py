"""Refit: the whole serving bundle from the store, gated on a temporal hold-out before it may be served.

The candidate is fitted without the hold-out, so its NDCG@10 there is an honest estimate. What it is compared with
must not have seen the hold-out either: the serving version has folded every recent event into its counts through
refreshes (trending, transitions), so scored on them it would be answering questions it has seen the answers to
(a same-config refit measured 7.5% "worse" that way). The baseline is therefore the fit the serving version grew
from (its `refit` version, kept by the registry), scored on the newest events after that fit's watermark: the
question for both is "predict what shoppers did next from what you knew". The serving version's refreshes since add
only counts, which the candidate gets too (the hold-out is folded into it after the gate).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl

from aisle.bundle import Bundle, build_serving_bundle, fingerprint
from aisle.config import Settings
from aisle.data.readers.base import Dataset
from aisle.pipeline import PipelineConfig
from aisle.registry import Decision
from aisle.types import IMPRESSION_SCHEMA
from aisle.worker.gate import failures, health, holdout_cut, ndcg_on_holdout, passed
from aisle.worker.refresh import fold


def refit(data: Dataset, watermark: int, baseline: Bundle | None, out: Path, settings: Settings,
          pipeline: PipelineConfig, *, unseen: pl.DataFrame | None = None, version: str | None = None,
          base: str | None = None, embedder: Any = None, impressions: pl.DataFrame | None = None,
          explore: Any = None, adapt: Any = None, previous_encoder: Path | None = None,
          catalog_log: Any = None, search_memory: bool = False) -> Decision:
    """Fit, gate, fold the hold-out in and save the candidate to `out`; the Decision says whether to promote it.

    `baseline`: the bundle to beat (None: nothing serves yet). `unseen`: the events the baseline has never seen
    (after its watermark); the hold-out is the newest of them. None: the newest events of the whole log.
    `impressions`: the store's impression log, for a pipeline that ranks with what it learns from them.
    `explore`: the serving version's exploration state, carried into the candidate (a refit does not forget what
    exploration learned). `adapt` (`AdaptSettings`, the `[search]` table of the worker's pipeline file): search's
    encoder is fine-tuned on the searches before the hold-out, as `aisle train --adapt` does on everything, or,
    with too few pairs, `previous_encoder` (the serving version's fine-tune) is carried forward. `catalog_log`: the
    servers' upsert log as read before the store (`aisle.serve.catalog_log`), whose coverage the decision records.
    `search_memory`: search remembers the searches before the hold-out (`aisle.search.memory`), as `aisle train`."""
    cfg = settings.worker
    t0 = time.perf_counter()
    events = data.events
    pool = unseen if unseen is not None else events
    cut = holdout_cut(pool, n_events=cfg.holdout_events, days=cfg.holdout_days, cap=unseen is None)
    holdout = pool.filter(pl.col("timestamp") >= cut) if cut is not None else pool.clear()
    before = events.join(holdout, on=list(events.columns), how="anti", nulls_equal=True) if holdout.height \
        else events
    train = Dataset(name=data.name, log=data.log, items=data.items, users=data.users, events=before)
    candidate = build_serving_bundle(train, pipeline, seed=cfg.seed, dense=cfg.dense, adapt=adapt,
                                     previous_encoder=previous_encoder, search_memory=search_memory)
    encoder = candidate.manifest.get("metrics", {}).get("parts", {}).get("search_encoder")
    learned: dict[str, Any] = {}
    if pipeline.ranker == "impressions":
        candidate, learned = learn_from_impressions(candidate, baseline, impressions, events, before, cut, settings)
    fit_s = time.perf_counter() - t0
    scores: dict[str, dict[str, Any]] = {}
    if baseline is not None and baseline.pipeline is not None and holdout.height:
        scores = ndcg_on_holdout({"candidate": candidate, "serving": baseline}, before, holdout,
                                 users=cfg.gate_users, seed=cfg.seed)
    gate_s = time.perf_counter() - t0 - fit_s
    folded = fold(candidate, holdout, None, embedder=embedder)  # the gated model, now also counting the hold-out
    candidate.explore = explore
    candidate.save(out, data_fingerprint=fingerprint(events), metrics=candidate.manifest.get("metrics", {}))
    checks = health(out, settings)
    cand, serv = scores.get("candidate", {}), scores.get("serving", {})
    if not passed(checks):
        promoted, reason = False, f"health checks failed: {failures(checks)}"
    elif not serv:
        promoted, reason = True, ("nothing served to compare with" if baseline is None else
                                  "the serving version has seen every event (no later event to score both on): "
                                  "promoted on its health checks" if unseen is not None else
                                  "no hold-out to score on")
    else:
        floor = serv["ndcg@10"] * (1 - cfg.tolerance)
        promoted = cand["ndcg@10"] >= floor
        reason = (f"NDCG@10 {cand['ndcg@10']:.4f} vs serving {serv['ndcg@10']:.4f} "
                  f"({'within' if promoted else 'below'} the {cfg.tolerance:.0%} tolerance: floor {floor:.4f})")
    if learned.get("off_policy", {}).get("candidate"):
        reason += "; " + off_policy_summary(learned["off_policy"])
    if encoder is not None:
        reason += f"; search encoder: {encoder['what']}"
        learned["search_encoder"] = encoder
    if catalog_log is not None:
        from aisle.serve.catalog_log import covered

        learned["catalog_version"] = covered(candidate.catalog, catalog_log)
    return Decision("refit", promoted, reason, candidate=cand, serving=serv, checks=checks, extra={
        "watermark": watermark, "refit_at": time.time(), "events_since_refit": 0, "base": base, "refit": version,
        "baseline": "scored on events it never saw (after its watermark or its newest event)" if unseen is not None
        else "the serving version as it is (it may have seen the hold-out)",
        "events": events.height, "holdout_events": holdout.height, "holdout_from": str(cut),
        "folded_holdout": folded.as_dict(), "pipeline": pipeline.to_json()["sources"], **learned,
        "seconds": {"fit": round(fit_s, 2), "gate": round(gate_s, 2), "total": round(time.perf_counter() - t0, 2)}})


def learn_from_impressions(candidate: Bundle, baseline: Bundle | None, impressions: pl.DataFrame | None,
                           events: pl.DataFrame, before: pl.DataFrame, cut: Any, settings: Settings
                           ) -> tuple[Bundle, dict[str, Any]]:
    """The candidate with its ranker learned from the lists served before the hold-out (when there are at least
    `impression_ranker_min`), and what the decision records: the ranker's facts and, on the lists served in the
    hold-out, the off-policy estimates of the candidate's and the serving pipeline's click rate."""
    from aisle import implearn

    cfg = settings.worker
    log = implearn.served_lists(impressions if impressions is not None else pl.DataFrame(schema=IMPRESSION_SCHEMA))
    early = log.filter(pl.col("timestamp") < cut) if cut is not None else log
    lists = early["request_id"].n_unique()
    if lists < cfg.impression_ranker_min:
        return candidate, {"impression_ranker": {"trained": False, "served_lists": lists,
                                                 "reason": f"{lists:,} recommendation lists before the hold-out, fewer "
                                                           f"than impression_ranker_min ({cfg.impression_ranker_min:,})"
                                                           ": the combiner ranks"}}
    try:
        ranker = implearn.train(candidate, early, events, history_events=before, seed=cfg.seed)
    except ValueError as exc:  # e.g. not one click in the log: nothing to learn, the combiner ranks
        return candidate, {"impression_ranker": {"trained": False, "served_lists": lists, "reason": str(exc)}}
    candidate = implearn.with_ranker(candidate, ranker, before)
    out: dict[str, Any] = {"impression_ranker": {"trained": True, "served_lists": lists, **ranker.facts,
                                                 "top_features": dict(list(ranker.importance().items())[:5])}}
    late = log.filter(pl.col("timestamp") >= cut) if cut is not None else log.clear()
    if baseline is not None and baseline.pipeline is not None and late.height:
        out["off_policy"] = implearn.compare_off_policy(candidate, baseline, late, events, history_events=events,
                                                        seed=cfg.seed)
    else:
        out["off_policy"] = {"lists": 0, "note": "no served list in the hold-out, or nothing serving to compare with"}
    return candidate, out


def off_policy_summary(ope: dict[str, Any]) -> str:
    """One line for the decision's reason: both pipelines' estimated click rate per shown item on the hold-out."""
    c, s = ope["candidate"], ope["serving"]
    return (f"off-policy click rate on {ope['lists']:,} held-out lists: SNIPS {c['SNIPS']['value']:.4f} vs serving "
            f"{s['SNIPS']['value']:.4f}, DR {c['DR']['value']:.4f} vs {s['DR']['value']:.4f}")


__all__ = ["learn_from_impressions", "off_policy_summary", "refit"]
