"""A search session on the serving side: the steps kept in the live state, the refiner over the runtime's
catalog, and the answer of `/search?conversation=...` (the usual search body plus `refinement`).

The steps of a session are a stack of `SearchState`s: each utterance that refines or starts a search pushes one,
"undo" pops one, so the shopper can walk back step by step (up to `state.CONVERSATION_STEPS`). Each step keeps the
page it showed, which is what "the second one", "cheaper" (than what is shown) and "not that brand" refer to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aisle.query import Filters
from aisle.search.refine import Refiner, SearchState, size_of

if TYPE_CHECKING:
    from aisle.search.engine import SearchEngine
    from aisle.serve.runtime import Runtime

_SIZED_SHARE = 0.6  # an attribute is a size when at least this share of its values read as one


def refiner_for(engine: SearchEngine) -> Refiner:
    """A refiner over the engine's catalog: its parser (brands, colours, attribute values, prices) and the
    attributes whose values read as sizes ("64GB", "2 lb", "XL")."""
    sizes: dict[str, dict[str, float]] = {}
    for key, values in engine.catalog.normalized_values().items():
        if not key.startswith("attr:"):
            continue
        read = {orig: s for orig in values.values() if (s := size_of(orig)) is not None}
        if len(set(read.values())) >= 3 and len(read) >= _SIZED_SHARE * len(values):
            sizes[key[5:]] = read
    return Refiner(engine.parser, sizes, engine.attribute_values)


def converse(rt: Runtime, steps: list[dict[str, Any]], utterance: str, *, undo: bool, filters: Filters, sort: str,
             page: int, page_size: int, affinity: dict[str, dict[str, float]] | None, step: int | None = None
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The answer to one turn of a session and the session's steps after it. `step` re-shows that step (another
    page, facet or sort of it, a reload, the browser's back button) instead of taking `utterance` as a new turn;
    the steps after it are dropped, so the next utterance refines what is on screen."""
    assert rt.search is not None
    if step is not None and steps:
        del steps[step + 1:]
        kind, changes = "show", []
        state = SearchState.from_json(steps[-1])
        return _answer(rt, steps, state, kind, changes, utterance, filters, sort, page, page_size, affinity)
    previous = SearchState.from_json(steps[-1]) if steps else None
    ref = None if undo else rt.refiner.refine(previous, utterance)
    if ref is None or ref.kind == "undo":
        kind, changes = "undo", [{"kind": "undo"}]
        if len(steps) > 1:
            steps.pop()
        if not steps:  # nothing searched yet: an undo shows everything
            steps.append(SearchState(query="").to_json())
        state = SearchState.from_json(steps[-1])
    else:
        kind, state, changes = ref.kind, ref.state, ref.changes
        steps.append(state.to_json())
    return _answer(rt, steps, state, kind, changes, utterance, filters, sort, page, page_size, affinity)


def _answer(rt: Runtime, steps: list[dict[str, Any]], state: SearchState, kind: str, changes: list[dict[str, Any]],
            utterance: str, filters: Filters, sort: str, page: int, page_size: int,
            affinity: dict[str, dict[str, float]] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the state's search (or "more like"), remember the page shown, describe the turn."""
    applied = filters.merged(Filters.from_json(dict(state.filters)))
    order = sort if sort != "relevance" else state.sort
    if state.like:
        body = more_like(rt, state.like, applied, page_size)
    else:
        body = rt.search_json(state.query, filters=applied, sort=order, page=page, page_size=page_size,
                              affinity=affinity)
    state.shown = [{"item_id": h["item_id"], "title": h.get("title"), "brand": h.get("brand"),
                    "price": h.get("price")} for h in body["hits"]]
    steps[-1] = state.to_json()
    before = SearchState.from_json(steps[-2]) if len(steps) > 1 else None
    body["refinement"] = {
        "kind": kind, "utterance": utterance, "understood": state.understood, "changes": changes,
        "step": len(steps) - 1,
        "constraints": state.constraints(),
        "undo": {"available": before is not None, "steps": len(steps) - 1,
                 "previous": None if before is None else before.constraints(),
                 "previous_understood": None if before is None else before.understood}}
    return body, steps


def more_like(rt: Runtime, item_id: str, filters: Filters, page_size: int) -> dict[str, Any]:
    """A result page of items like `item_id` under `filters`: the search index's dense neighbours, else the
    recommendation pipeline's item neighbours (content, co-views)."""
    engine = rt.search
    assert engine is not None
    title = rt.title(rt.index[item_id]) if item_id in rt.index else item_id
    found = engine.more_like(item_id, filters, page_size)
    hits: list[dict[str, Any]] = []
    if found is not None:
        rows, sims = found
        for r, s in zip(rows.tolist(), sims.tolist(), strict=True):
            item = engine.catalog.item_ids[r]
            hits.append({"item_id": item, "similarity": round(float(s), 4)})
    else:
        near = rt.neighbours(item_id, 200, ("content", "itemknn", "markov")) or {"items": []}
        ok = engine.mask(filters)
        for card in near["items"]:
            row = engine.item_rows([card["item_id"]])[0]
            if row >= 0 and (ok is None or ok[row]):
                hits.append({"item_id": card["item_id"], "similarity": None})
    out = []
    for h in hits[:page_size]:
        row = rt.index.get(h["item_id"])
        if row is None:
            continue
        card = rt.card(row, h["similarity"])
        card["explanation"] = {"type": "similar", "text": f"Like {title}", "item_id": item_id,
                               "dense_similarity": h["similarity"]}
        out.append(card)
    rows = engine.item_rows([h["item_id"] for h in out])
    return {"query": {"original": "", "like": item_id}, "did_you_mean": None, "total": len(out), "page": 1,
            "page_size": page_size, "hits": out, "facets": engine.facets(rows[rows >= 0].astype(np.int64)),
            "filters": filters.to_json(), "relaxed": [], "took_ms": 0.0, "model_version": rt.version}


__all__ = ["converse", "more_like", "refiner_for"]
