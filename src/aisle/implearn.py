"""Learning to rank from the impression log: every served list becomes a training list for the pipeline's
impression ranker (`aisle.pipeline.impression_ranker`), and any pipeline becomes a policy that off-policy
evaluation (`aisle.ope`) can score on the same log.

A logged list is rebuilt as serving saw it: the shopper's positive events before the list was served (the store's
events, or the bundle's histories plus the simulator's) are the request's history, the bundle's pipeline computes
the candidates and their feature frame exactly as `Runtime._from_pipeline` does, and every shown item is kept as a
row even when no source proposes it any more (an explored item). Labels are graded by what the list earned,
matched by `request_id`: purchase 3, add to cart 2, click 1, shown and ignored 0. Only lists with at least one
label teach a ranking objective anything, so the others are not rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from aisle.models.base import EVENT_WEIGHTS, QueryBatch
from aisle.pipeline import FeatureFrame
from aisle.pipeline.impression_ranker import ImpressionRanker

GRADES: dict[str, int] = {"click": 1, "add_to_cart": 2, "purchase": 3}
SURFACE = "recommendations"  # the lists the pipeline's ranker orders (search, similar items, trending: not it)
POSITIVE: tuple[str, ...] = tuple(t for t, w in EVENT_WEIGHTS.items() if w > 0)
HISTORY = 50  # the newest positive events a rebuilt request keeps (what a bundle's histories keep)
_CHUNK = 256


@dataclass(frozen=True)
class TrainingLists:
    """The impression ranker's input: rows grouped by list (consecutive `sizes`), graded labels, shown positions."""

    frame: FeatureFrame
    labels: np.ndarray
    sizes: np.ndarray
    positions: np.ndarray
    dropped_rows: int  # shown items the bundle does not know (its vocabulary is older than the log)
    older_lists: int = 0  # labelled lists left out by `max_lists` (the oldest)

    @property
    def lists(self) -> int:
        return len(self.sizes)


def graded(impressions: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The impressions with a `grade` column: the best of click (1), add to cart (2) and purchase (3) that an event
    with the list's `request_id` gave that item, else 0."""
    if "request_id" not in events.columns:
        raise ValueError("events lack column request_id: labels are matched to the list that showed the item")
    hits = (events.filter(pl.col("event_type").is_in(list(GRADES)) & pl.col("request_id").is_not_null())
            .select("request_id", "item_id", pl.col("event_type").replace_strict(GRADES, return_dtype=pl.Int32)
                    .alias("grade"))
            .group_by("request_id", "item_id").agg(pl.col("grade").max()))
    return impressions.join(hits, on=["request_id", "item_id"], how="left").with_columns(
        pl.col("grade").fill_null(0))


def served_lists(impressions: pl.DataFrame, surface: str | None = SURFACE) -> pl.DataFrame:
    """The impressions of the lists the pipeline's ranker ordered (`surface`; None: every surface)."""
    return impressions if surface is None else impressions.filter(pl.col("surface") == surface)


def requests_of(impressions: pl.DataFrame) -> pl.DataFrame:
    """One row per logged list: request_id, user_id, timestamp, in log order."""
    return impressions.group_by("request_id", maintain_order=True).agg(pl.col("user_id").first(),
                                                                         pl.col("timestamp").first())


def histories_at(bundle: Any, requests: pl.DataFrame, events: pl.DataFrame) -> list[np.ndarray]:
    """Per request, the shopper's positive events strictly before it (the newest HISTORY, oldest first) as the
    bundle's item rows: what the request's history was when it was served."""
    index = bundle.items.index
    known = len(bundle.pipeline.facts)
    ev = (events.filter(pl.col("event_type").is_in(list(POSITIVE)) & pl.col("item_id").is_not_null()
                        & pl.col("user_id").is_in(requests["user_id"].unique().implode()))
          .select("user_id", "item_id", pl.col("timestamp").alias("_t")))
    ev = ev.with_columns(pl.col("item_id").replace_strict(index, default=-1, return_dtype=pl.Int64).alias("row"))
    ev = ev.filter((pl.col("row") >= 0) & (pl.col("row") < known))
    joined = (requests.with_row_index("_q").select("_q", "user_id", "timestamp").join(ev, on="user_id")
              .filter(pl.col("_t") < pl.col("timestamp")).sort("_q", "_t")
              .group_by("_q").agg(pl.col("row").tail(HISTORY)))
    out = [np.zeros(0, np.int64)] * requests.height
    for q, rows in zip(joined["_q"].to_list(), joined["row"].to_list(), strict=True):
        out[q] = np.asarray(rows, np.int64)
    return out


def training_lists(bundle: Any, impressions: pl.DataFrame, events: pl.DataFrame, *,
                   history_events: pl.DataFrame | None = None, max_lists: int | None = None,
                   surface: str | None = SURFACE, progress: Callable[[int, int], None] | None = None
                   ) -> TrainingLists:
    """The labelled lists of the log (of `surface`) with the features `bundle`'s pipeline computes for them.
    `events` label the lists (by request_id); `history_events` (default `events`) are what the shoppers' histories
    are rebuilt from. `max_lists`: at most the newest this many labelled lists."""
    pipe = bundle.pipeline
    if pipe is None:
        raise ValueError("the bundle has no pipeline to compute features with")
    rows = graded(served_lists(impressions, surface), events)
    labelled = rows.group_by("request_id").agg((pl.col("grade") > 0).any().alias("_any")).filter("_any")
    rows = rows.filter(pl.col("request_id").is_in(labelled["request_id"].implode()))
    reqs = requests_of(rows).sort("timestamp", maintain_order=True)
    older = max(0, reqs.height - max_lists) if max_lists is not None else 0
    reqs = reqs.tail(reqs.height - older)
    names = tuple(pipe.feature_names())
    frames, labels, sizes, positions, dropped = [], [], [], [], 0
    index, n_ext = bundle.items.index, len(pipe.facts)
    for start in range(0, reqs.height, _CHUNK):
        chunk = reqs.slice(start, _CHUNK)
        shown = (rows.join(chunk.select("request_id").with_row_index("_q"), on="request_id")
                 .sort("_q", "position"))
        item = shown["item_id"].replace_strict(index, default=-1, return_dtype=pl.Int64).to_numpy()
        ok = (item >= 0) & (item < n_ext)
        dropped += int((~ok).sum())
        query = shown["_q"].to_numpy().astype(np.int64)[ok]
        item = item[ok]
        hist = histories_at(bundle, chunk, history_events if history_events is not None else events)
        users = bundle.users.encode(chunk["user_id"].to_list())
        cands = pipe.candidates(QueryBatch(users, hist), exclude_history=False, include=(query, item))
        keys = cands.query.astype(np.int64) * n_ext + cands.item
        order = np.argsort(keys)
        at = order[np.searchsorted(keys[order], query * n_ext + item)]
        frames.append(cands.features.values[at])
        labels.append(shown["grade"].to_numpy()[ok])
        positions.append(shown["position"].to_numpy()[ok])
        sizes.append(np.bincount(query, minlength=chunk.height))
        if progress:
            progress(min(reqs.height, start + _CHUNK), reqs.height)
    size = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    values = np.vstack(frames) if frames else np.zeros((0, len(names)), np.float32)
    return TrainingLists(FeatureFrame(names, values), np.concatenate(labels) if labels else
                         np.zeros(0), size[size > 0], np.concatenate(positions) if positions else np.zeros(0),
                         dropped, older)


def train(bundle: Any, impressions: pl.DataFrame, events: pl.DataFrame, *, history_events: pl.DataFrame | None = None,
          debias: bool = True, rounds: int = 100, seed: int = 0, max_lists: int | None = 50_000,
          surface: str | None = SURFACE, progress: Callable[[int, int], None] | None = None) -> ImpressionRanker:
    """The impression ranker of `bundle`'s pipeline, trained on the log (see `training_lists`); `debias=False`
    takes clicks at face value (for comparison: what ignoring position bias learns)."""
    data = training_lists(bundle, impressions, events, history_events=history_events, max_lists=max_lists,
                          surface=surface, progress=progress)
    facts = {"labelled_lists": data.lists, "rows": len(data.labels), "clicked_rows": int((data.labels > 0).sum()),
             "unknown_items": data.dropped_rows, "older_lists_left_out": data.older_lists, "debiased": debias,
             "logged_from": str(impressions["timestamp"].min()), "logged_to": str(impressions["timestamp"].max())}
    return ImpressionRanker.fit(data.frame, data.labels.astype(np.float64), data.sizes,
                                data.positions if debias else None, rounds=rounds, seed=seed, facts=facts)


def with_ranker(bundle: Any, ranker: ImpressionRanker, events: pl.DataFrame) -> Any:
    """A copy of `bundle` whose pipeline holds `ranker`, with the per-user lists it serves known shoppers from
    ranked again (by the ranker when the pipeline's configuration chooses it); `events`: those the bundle was
    built from (its users' histories)."""
    import dataclasses

    from aisle.models.base import TrainData

    pipe = bundle.pipeline.with_impression_ranker(ranker)
    train = TrainData.from_events(events, items=bundle.items, catalog=bundle.catalog, users=bundle.users)
    ranked = pipe.ranked(train, bundle.user_rows) if bundle.ranked else {}
    metrics = bundle.manifest.get("metrics", {})
    manifest = {**bundle.manifest, "metrics": {**metrics, "pipeline": {**metrics.get("pipeline", {}),
                                                                       "ranker": pipe.ranker,
                                                                       "impression_ranker": ranker.facts}}}
    return dataclasses.replace(bundle, pipeline=pipe, ranked=ranked, manifest=manifest)


def policy_lists(bundle: Any, requests: pl.DataFrame, events: pl.DataFrame, k: int) -> pl.DataFrame:
    """What `bundle`'s pipeline would have shown for each logged request (its ranker over its candidates, the
    shopper's history and unavailable items left out), as a deterministic policy's probability table
    (request_id, position, item_id, probability 1): the candidate side of `aisle.ope.estimate`."""
    pipe = bundle.pipeline
    ids, available = bundle.items.ids, pipe.attrs.available
    out: list[tuple[str, int, str, float]] = []
    for start in range(0, requests.height, _CHUNK):
        chunk = requests.slice(start, _CHUNK)
        hist = histories_at(bundle, chunk, events)
        users = bundle.users.encode(chunk["user_id"].to_list())
        cands = pipe.candidates(QueryBatch(users, hist), exclude_history=True)
        scores = pipe.rank(cands)
        ok = available[cands.item] if len(cands) else np.zeros(0, bool)
        query, item, scores = cands.query[ok], cands.item[ok], scores[ok]
        order = np.lexsort((-scores, query))
        query, item = query[order], item[order]
        rank = np.arange(len(query)) - np.searchsorted(query, query)
        top = rank < k
        rid = chunk["request_id"].to_list()
        out += [(rid[q], r + 1, str(ids[i]), 1.0) for q, r, i in zip(query[top].tolist(), rank[top].tolist(),
                                                                    item[top].tolist(), strict=True)]
    from aisle.simulate.policies import PROBABILITY_SCHEMA

    return pl.DataFrame(out, schema=PROBABILITY_SCHEMA, orient="row")


def compare_off_policy(candidate: Any, serving: Any, impressions: pl.DataFrame, events: pl.DataFrame, *,
                       history_events: pl.DataFrame | None = None, reward: str = "click", k: int | None = None,
                       surface: str | None = SURFACE, seed: int = 0, n_boot: int = 500) -> dict[str, Any]:
    """SNIPS and DR estimates (with intervals) of both bundles' pipelines as policies on the logged lists (of
    `surface`), and the candidate's difference from serving: the off-policy evidence a promotion decision
    carries."""
    from aisle.ope import attach_rewards, estimate

    impressions = served_lists(impressions, surface)
    if impressions.is_empty():
        return {"lists": 0, "note": "no impressions to estimate from"}
    k = k or int(impressions["position"].max())
    log = attach_rewards(impressions, events, reward)
    reqs = requests_of(impressions)
    hist = history_events if history_events is not None else events
    out: dict[str, Any] = {"reward": reward, "lists": reqs.height, "rows": impressions.height,
                           "logged_value": float(log["reward"].mean())}
    for name, bundle in (("candidate", candidate), ("serving", serving)):
        result = estimate(log, policy_lists(bundle, reqs, hist, k), seed=seed, n_boot=n_boot)
        out[name] = {e: {"value": result[e].value, "low": result[e].low, "high": result[e].high}
                     for e in ("SNIPS", "DR")} | {"matched_rows": result.matched_rows}
    out["difference"] = {e: out["candidate"][e]["value"] - out["serving"][e]["value"] for e in ("SNIPS", "DR")}
    return out


__all__ = ["GRADES", "SURFACE", "TrainingLists", "compare_off_policy", "graded", "histories_at", "policy_lists",
           "requests_of", "served_lists", "train", "training_lists", "with_ranker"]
