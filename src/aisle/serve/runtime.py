"""`Runtime`: one loaded bundle plus the catalog upserts made since, answering requests synchronously.

A Runtime never changes after it is built; a hot swap or a catalog upsert builds a new one (sharing the heavy
arrays) and replaces the reference, so a request that started on the old one finishes on it. An upsert
(`with_upserts`) costs in proportion to the changed items: the id map and per-item columns are copied with those
rows replaced or appended, the search engine takes them as a delta (`SearchEngine.with_items`), and the pipeline
places the new items among their neighbours. A bundle load holding upserts applies them to the loaded search index
as a delta too: no path here rebuilds the index over the whole catalog. Everything a request needs is ready here:
id -> index maps, card columns, the pipeline over the current catalog (new items placed by resemblance), the search
engine over the same catalog. The runtime talks to the pipeline through its methods (candidates, rank, explain,
neighbours) and to the search engine through `search`; per request the work is a few small numpy operations over a
few hundred candidates.
"""

from __future__ import annotations

import copy
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import polars as pl

from aisle.bundle import Bundle
from aisle.config import Settings
from aisle.explore import EXPLANATION, Explorer, ExploreState, Featurizer
from aisle.explore.learn import cold_pool, learn
from aisle.models.base import EVENT_WEIGHTS, QueryBatch
from aisle.optimize.serving import indexed_online
from aisle.overlay import Column, Layered
from aisle.pipeline import Pipeline, extend_attributes, item_attributes
from aisle.pipeline.cold_start import new_item_similarity
from aisle.query import Filters, Query
from aisle.rules import ItemAttributes, Selected, apply_rules
from aisle.search.explain import explain_hit
from aisle.search.refine import Refiner
from aisle.serve.conversation import refiner_for
from aisle.serve.impressions import DETERMINISTIC, Policy
from aisle.serve.state import LiveEvent
from aisle.types import EVENT_TYPES, ITEM_SCHEMA, conform

if TYPE_CHECKING:
    from aisle.web.suggest import Suggester

_POSITIVE = {t for t, w in EVENT_WEIGHTS.items() if w > 0}
_CARD_COLUMNS = ("title", "brand", "price", "currency", "categories")
_PINNED = {"type": "promoted", "text": "Featured"}
_STATIC_CARDS = 100_000  # rows whose static card fields a runtime keeps (`Runtime._static_card`)


def upsert_frame(upserts: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """API item records as an ITEM_SCHEMA frame, one row per item id (the last record of a repeated id wins)."""
    frame = conform(pl.DataFrame(list(upserts), schema_overrides={"categories": pl.List(pl.String)}, strict=False),
                    ITEM_SCHEMA)
    return frame.unique("item_id", keep="last", maintain_order=True)


def _catalog(bundle: Bundle, upserts: Sequence[dict[str, Any]]) -> tuple[list[str], pl.DataFrame, list[str]]:
    """(item ids in index order, the catalog aligned with them, ids new since the bundle) after `upserts`."""
    base = bundle.catalog if bundle.catalog is not None else pl.DataFrame({"item_id": []}, schema={
        "item_id": pl.String})
    ups = upsert_frame(upserts) if upserts else None
    new_ids = list(dict.fromkeys(i for i in (ups["item_id"].to_list() if ups is not None else [])
                                 if i not in bundle.items.index))
    ids = [*bundle.items.ids.tolist(), *new_ids]
    table = conform(base, ITEM_SCHEMA) if base.height else conform(base, ITEM_SCHEMA).clear()
    if ups is not None:
        table = pl.concat([table.filter(~pl.col("item_id").is_in(ups["item_id"].implode())), ups])
    frame = pl.DataFrame({"item_id": pl.Series(ids, dtype=pl.String)})
    return ids, frame.join(table.unique("item_id", keep="last"), on="item_id", how="left", maintain_order="left"), \
        new_ids


@dataclass(frozen=True)
class _Greedy:
    """A greedy list before its cards are built: the item rows, which are pins, and `build(i)`, the card of the
    i-th. Why not the cards themselves: a card's explanation is its costly part, and an exploring list drops a
    greedy item for each slot it fills, so it builds only the cards it shows."""

    rows: list[int]
    pinned: list[bool]
    build: Callable[[int], dict[str, Any]]

    def filled(self, more: _Greedy, k: int) -> _Greedy:
        """This list, then the items of `more` not in it, up to `k`."""
        have = set(self.rows)
        add = [j for j, row in enumerate(more.rows) if row not in have][: max(k - len(self.rows), 0)]
        n, build = len(self.rows), self.build
        return _Greedy(self.rows + [more.rows[j] for j in add], self.pinned + [more.pinned[j] for j in add],
                       lambda i: build(i) if i < n else more.build(add[i - n]))

    def cards(self) -> list[dict[str, Any]]:
        return [self.build(i) for i in range(len(self.rows))]


_NOTHING = _Greedy([], [], lambda i: {})
_NO_ROWS = np.zeros(0, np.int64)
_NO_ROWS.flags.writeable = False


class Runtime:
    def __init__(self, bundle: Bundle, settings: Settings, upserts: Sequence[dict[str, Any]] = (),
                 embedder: Any = None) -> None:
        self.bundle, self.settings, self.embedder = bundle, settings, embedder
        self.version = bundle.version
        self.loaded_at = time.time()
        ids, catalog, new_ids = _catalog(bundle, upserts)
        # overlays (aisle.overlay): an upsert's next runtime shares them and copies only what it changes
        self.item_ids: Column[str] = Column(ids)
        self._frame = catalog
        self._records: Layered[int, dict[str, Any]] = Layered()
        self._materialized: pl.DataFrame | None = catalog
        self.index: Layered[str, int] = Layered.sharing({i: n for n, i in enumerate(ids)})
        self.n_old = len(bundle.items)
        self.cards: dict[str, Column[Any]] = {c: Column(catalog[c].to_list()) for c in _CARD_COLUMNS}
        self._static_cards: dict[int, tuple[Any, ...]] = {}  # `_static_card`: per runtime, an upsert starts afresh
        self.attrs: ItemAttributes = item_attributes(catalog, len(self.item_ids))
        self.search = bundle.search
        if upserts and bundle.search is not None:  # a bundle load holding upserts: they go on as a delta again
            self.search = bundle.search.with_items(upsert_frame(upserts).filter(pl.col("title").is_not_null()))
        self.pipeline: Pipeline | None = self._pipeline_over_catalog([self.index[i] for i in new_ids])
        self.n_users = len(bundle.users)
        # live sessions are scored per request on small catalogs, and on any catalog whose user sources are
        # served from an ANN index ([inference] ann_min_items)
        self.online = len(self.item_ids) <= settings.online_max_items or indexed_online(self.pipeline)
        self._search_cache: OrderedDict[Any, tuple[bytes, list[tuple[str, float]]]] = OrderedDict()
        self.policy: Policy = DETERMINISTIC  # what the impression log records as each shown item's propensity
        self.explore_state: ExploreState = bundle.explore or ExploreState()
        self.explorer: Explorer | None = self._explorer()
        self._suggester: Suggester | None = None  # built on first use (`suggester`), then kept up by upserts

    def _explorer(self) -> Explorer | None:
        """The exploring slot policy over this catalog and state ([explore] on and a pipeline to explore beside)."""
        cfg = self.settings.explore
        if not cfg.enabled or self.pipeline is None:
            return None
        state = self.explore_state
        features = Featurizer(self.attrs, self.index, self.bundle.users, self.bundle.histories, state,
                              (cfg.prior_clicks, cfg.prior_misses))
        pool = cold_pool(cfg, state, self.pipeline.event_counts, self.attrs, self.item_ids, self.index)
        return Explorer(cfg, self.settings.rules, features, pool, self.item_ids)

    def learn(self, impressions: pl.DataFrame, events: pl.DataFrame) -> ExploreState:
        """The exploration state after new `impressions` and `events`, over this runtime's catalog (what the
        simulator runs between refreshes; the worker runs the same `aisle.explore.learn` over its bundle)."""
        assert self.pipeline is not None
        return learn(self.explore_state, impressions, events, cfg=self.settings.explore, attrs=self.attrs,
                     item_ids=self.item_ids, counts=self.pipeline.event_counts, users=self.bundle.users,
                     histories=self.bundle.histories)

    def with_exploration(self, state: ExploreState) -> Runtime:
        """This runtime exploring from `state` (what a worker refresh learned): a new Runtime to swap in."""
        out = copy.copy(self)
        out.explore_state = state
        out.explorer = out._explorer()
        return out

    def _pipeline_over_catalog(self, new_rows: list[int]) -> Pipeline | None:
        """The bundle's pipeline over the current catalog, new items placed next to the items they resemble."""
        if self.bundle.pipeline is None:
            return None
        pipeline = self.bundle.pipeline.with_items(self.attrs)
        if not new_rows:
            return pipeline
        similarity = new_item_similarity(pipeline, new_rows, self.catalog[new_rows], self.index, self.attrs,
                                         embedder=self.embedder, search=self.bundle.search)
        return pipeline.with_items(self.attrs, new_rows, similarity)

    # ---- catalog upserts ----------------------------------------------------------------------------

    def with_upserts(self, upserts: Sequence[dict[str, Any]]) -> Runtime:
        """This runtime after upserting `upserts` (API item records): a new Runtime, built in time proportional to
        the changed items (see the module docstring), that the caller swaps in; this one is left as it was."""
        ups = upsert_frame(upserts)
        if ups.is_empty():
            return self
        out = copy.copy(self)
        rows, added = [], {}
        for item_id in ups["item_id"].to_list():
            row = self.index.get(item_id)
            if row is None:
                row = added[item_id] = len(self.item_ids) + len(added)
            rows.append(row)
        out.item_ids = self.item_ids.with_values(list(added.values()), list(added), "")
        out.index = self.index.with_items(added)
        records = ups.to_dicts()
        out.cards = {c: self.cards[c].with_values(rows, [rec[c] for rec in records], None) for c in _CARD_COLUMNS}
        out._static_cards = {}
        out._records = self._records.with_items(zip(rows, records, strict=True))
        out._materialized = None
        out.attrs = extend_attributes(self.attrs, rows, ups)
        if self.search is not None:
            out.search = self.search.with_items(ups.filter(pl.col("title").is_not_null()))
        if self.pipeline is not None:
            new = [j for j, row in enumerate(rows) if row >= len(self.item_ids)]
            new_rows = [rows[j] for j in new]
            similarity = new_item_similarity(self.pipeline, new_rows, ups[new], out.index, out.attrs,
                                             embedder=self.embedder, search=self.bundle.search) if new else None
            out.pipeline = self.pipeline.with_items(out.attrs, new_rows, similarity)
        out.online = len(out.item_ids) <= self.settings.online_max_items or indexed_online(out.pipeline)
        out._search_cache = OrderedDict()
        out.explorer = out._explorer()  # new items join the pool
        if self._suggester is not None:  # the changed items only, not a rebuild over the catalog
            out._suggester = self._suggester.with_rows(self, out, rows)
        return out

    @property
    def suggester(self) -> Suggester:
        """The search box's completions over this catalog (`aisle.web.suggest`): built on the first suggestion
        after a bundle load; each upsert after that updates it by the changed items (`with_upserts`)."""
        if self._suggester is None:
            from aisle.web.suggest import Suggester  # aisle.web imports the serving app: not at module level

            self._suggester = Suggester.from_runtime(self)
        return self._suggester

    @property
    def catalog(self) -> pl.DataFrame:
        """Every item's record (ITEM_SCHEMA) aligned with `item_ids`. After upserts it is assembled on first use
        (a dashboard's statistics), not on every upsert; one item's record is `item_record`."""
        frame = self._materialized
        if frame is None:
            upd = pl.DataFrame([{**rec, "_row": row} for row, rec in self._records.items()],
                               schema={**self._frame.schema, "_row": pl.Int64})
            base = self._frame.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
            frame = pl.concat([base.filter(~pl.col("_row").is_in(upd["_row"].implode())),
                               upd.select(base.columns)]).sort("_row").drop("_row")
            self._materialized = frame
        return frame

    def item_record(self, row: int) -> dict[str, Any]:
        """One item's catalog record (ITEM_SCHEMA fields)."""
        rec = self._records.get(row)
        return rec if rec is not None else self._frame.row(row, named=True)

    # ---- how explanations name things (aisle.pipeline.sources.Describe) ------------------------------

    def title(self, row: int) -> str | None:
        static = self._static_cards.get(row)  # only rows of the catalog are kept there
        if static is None and 0 <= row < len(self.item_ids):
            static = self._static_card(row)
        return static[7] if static is not None else None

    def item_id(self, row: int) -> str | None:
        static = self._static_cards.get(row)
        if static is None and 0 <= row < len(self.item_ids):
            static = self._static_card(row)
        return static[0] if static is not None else None

    def category(self, row: int) -> str | None:
        leaf = self.attrs.leaf[row]
        return self.attrs.leaf_names[leaf] if leaf >= 0 else None

    # ---- queries -------------------------------------------------------------------------------------

    def query(self, user_id: str, live: list[LiveEvent], erased: bool, context: str | None = None, *,
              filters: Filters | None = None, exclude: Sequence[str] = ()) -> Query:
        """The request as the pipeline sees it: the bundle's copy of the shopper's past, then what they did since,
        then the item on screen (as a view)."""
        user = -1 if erased else self.bundle.users.index.get(user_id, -1)
        items: list[int] = []
        types: list[str] = []
        if user >= 0 and self.bundle.histories is not None:
            past, codes, _ = self.bundle.histories.of(user)
            items, types = past.tolist(), [EVENT_TYPES[t] for t in codes.tolist()]  # Python ints index faster
        for item, event_type, _ts in live:
            row = self.index.get(item)
            if row is not None:
                items.append(row)
                types.append(event_type)
        row = self.index.get(context) if context is not None else None
        if row is not None:
            items.append(row)
            types.append("view")
        return Query(user, np.asarray(items, np.int64), tuple(types), len(live), filters or Filters(),
                     tuple(self.index[e] for e in exclude if e in self.index))

    # ---- recommendations -----------------------------------------------------------------------------

    def recommend(self, query: Query, k: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        # rows not to show, as one array: the rules and the exploring slot index with it (a Python list of a
        # 50-event history was converted again by each of them)
        excluded = self._seen(query)
        if query.exclude:
            excluded = np.concatenate((excluded, np.asarray(query.exclude, np.int64)))
        greedy = self._from_bundle(query, k, excluded)
        if greedy is None:
            greedy = self._from_pipeline(query, k, excluded) if self.pipeline is not None else _NOTHING
        if len(greedy.rows) < k:  # unknown shopper under narrow filters, or no pipeline: trending fills the list
            greedy = greedy.filled(self._trending(k, query.filters, excluded), k)
        picks = self._explore(greedy, query, k, excluded) if self.explorer is not None else greedy.cards()
        return {"items": picks, "took_ms": round((time.perf_counter() - t0) * 1000, 2),
                "model_version": self.version, "history_length": len(query.history), "live_events": query.live}

    def _explore(self, greedy: _Greedy, query: Query, k: int, excluded: np.ndarray) -> list[dict[str, Any]]:
        """The cards of the greedy list with the exploration slots filled on a share of requests (the greedy items
        they push off the list are never built); every card carries its exact `propensity`
        (`aisle.explore.policy`)."""
        assert self.explorer is not None
        user = query.user_idx
        history = self.bundle.histories.of(user)[0] if user >= 0 and self.bundle.histories is not None else \
            np.zeros(0, np.int64)
        res = self.explorer.choose(np.asarray(greedy.rows, np.int64), greedy.pinned, k, excluded=excluded,
                                   filters=query.filters, history=history)
        out = []
        for row, at, p in zip(res.rows.tolist(), res.source.tolist(), res.propensities.tolist(), strict=True):
            card = greedy.build(at) if at >= 0 else self.card(row, None, dict(EXPLANATION))
            card["propensity"] = p if p == 1.0 else round(p, 6)  # most are 1: no rounding call for them
            out.append(card)
        return out

    def _from_pipeline(self, query: Query, k: int, excluded: np.ndarray) -> _Greedy:
        pipe = self.pipeline
        assert pipe is not None
        positive = np.array([t in _POSITIVE for t in query.types], bool)
        history = query.history[positive] if len(query.history) else query.history
        cands = pipe.candidates(QueryBatch(np.array([query.user_idx]), [history]),
                                precomputed=self._precomputed_lists(query), exclude_history=False)
        scores = pipe.rank(cands)
        chosen = self._rules(cands.item, scores, k, excluded, query.filters)
        chosen = self._expose_new(chosen, cands.item, scores, k, excluded, query.filters)
        return self._pending(chosen, cands.best_source, cands.anchor, query)

    def _from_bundle(self, query: Query, k: int, excluded: np.ndarray) -> _Greedy | None:
        """A known shopper with nothing new since the bundle: their ranked list from the bundle, under the rules.
        None (run the pipeline) when they have live events, the rules keep seen items, or filters leave < k."""
        ranked, histories = self.bundle.ranked, self.bundle.histories
        user = query.user_idx
        if (not ranked or query.live or user < 0 or self.pipeline is None or histories is None
                or len(query.history) != histories.length(user) or self.settings.rules.exclude_seen != "all"):
            return None
        items = ranked["items"][user]
        ok = items >= 0
        chosen = self._rules(items[ok], ranked["scores"][user][ok], k, excluded, query.filters)
        if len(chosen.rows) < k:
            return None
        return self._pending(chosen, ranked["source"][user][ok], ranked["anchor"][user][ok], query)

    def _pending(self, chosen: Selected, sources: np.ndarray, anchors: np.ndarray, query: Query) -> _Greedy:
        """The chosen items, each to be explained by the source that ranked it best (`sources[i]`, with its anchor
        `anchors[i]`, for the candidate at position i)."""
        rows, scores, positions = chosen.rows.tolist(), chosen.scores.tolist(), chosen.positions.tolist()

        def build(i: int) -> dict[str, Any]:
            row, at = rows[i], positions[i]
            why = _PINNED if at < 0 else self._explain(row, int(sources[at]), int(anchors[at]), query)
            return self.card(row, scores[i], why)

        return _Greedy(rows, [p < 0 for p in positions], build)

    def _explain(self, row: int, source: int, anchor: int, query: Query) -> dict[str, Any]:
        assert self.pipeline is not None
        title = self.title(anchor)
        if row >= self.n_old and title:
            return {"type": "similar", "text": f"New, and similar to {title}", "item_id": self.item_id(anchor)}
        return self.pipeline.explain(row, source, anchor, query, self)

    def _rules(self, rows: np.ndarray, scores: np.ndarray, k: int, excluded: np.ndarray,
               filters: Filters | None) -> Selected:
        return apply_rules(rows, scores, k, attrs=self.attrs, rules=self.settings.rules, index=self.index,
                           exclude=excluded, filters=filters)

    def _expose_new(self, chosen: Selected, items: np.ndarray, scores: np.ndarray, k: int, excluded: np.ndarray,
                    filters: Filters | None) -> Selected:
        """The `new_item_slot` rule: a new item among the candidates is shown at that position at the latest (not
        with exploration on: the bandit places new items, and learns which)."""
        slot = self.settings.rules.new_item_slot
        if self.explorer is not None:  # exploration places new items (README "Exploring new and cold items")
            return chosen
        if slot is None or self.n_old >= len(self.item_ids):
            return chosen
        shown_new = np.flatnonzero(chosen.rows >= self.n_old)
        if len(shown_new):  # the list has one already: moved up to the slot if it is further down
            return chosen.moved(int(shown_new[0]), min(slot, k) - 1)
        new = items >= self.n_old
        if not new.any():
            return chosen
        # what the list shows already is excluded: else a pin, which the rules place in any list it may enter,
        # came back as "the best new item" and was shown twice
        best = self._rules(items[new], scores[new], 1, np.concatenate((excluded, chosen.rows)), filters)
        if not len(best.rows):
            return chosen
        at = min(slot, k, len(chosen.rows) + 1) - 1
        shown = chosen.scores[at] if at < len(chosen.scores) else best.scores[0]
        return chosen.inserted(at, best.rows[0], shown, False, np.flatnonzero(new)[best.positions[0]], k)

    def _precomputed_lists(self, query: Query) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """The bundle's per-user lists for a known user, unless the catalog is small enough (or indexed) to score
        the live session; None: run every source on the query."""
        assert self.pipeline is not None
        keys = self.pipeline.per_user_keys
        empty = (np.zeros((1, 0), np.int32), np.zeros((1, 0), np.float32))
        user = query.user_idx
        if user < 0 and not len(query.history):  # nothing to personalise on: trending and popularity decide
            return dict.fromkeys(keys, empty)
        if self.online and (query.live or user < 0):
            return None
        if user >= 0 and all(k in self.bundle.user_rows for k in keys):
            return {k: (self.bundle.user_rows[k][0][user:user + 1], self.bundle.user_rows[k][1][user:user + 1])
                    for k in keys}
        return None if self.online else dict.fromkeys(keys, empty)

    def _seen(self, query: Query) -> np.ndarray:
        mode = self.settings.rules.exclude_seen
        if mode == "none" or not len(query.history):
            return _NO_ROWS
        if mode == "purchased":
            return query.history[np.array([t == "purchase" for t in query.types], bool)]
        return query.history

    def card(self, row: int, score: float | None = None, why: dict[str, Any] | None = None) -> dict[str, Any]:
        item_id, title, brand, price, currency, category, available, _ = \
            self._static_cards.get(row) or self._static_card(row)
        out = {"item_id": item_id, "title": title, "brand": brand, "price": price, "currency": currency,
               "category": list(category), "available": available}
        if score is not None:
            out["score"] = round(score, 5)
        if why is not None:
            out["explanation"] = why
        return out

    def _static_card(self, row: int) -> tuple[Any, ...]:
        """A card's fields that only an upsert changes (which builds a new runtime), read once per row and kept (the
        card's fields, then the raw title): ten cards a request each read seven overlay columns otherwise, and their
        explanations the anchors' titles and ids, a third of `recommend`'s time. Kept as a
        tuple of strings and numbers (the garbage collector stops tracking it) and bounded, so a long-running
        worker's cache neither grows past the catalog nor lengthens full collections."""
        c = self.cards
        item_id, title, price = self.item_ids[row], c["title"][row], c["price"][row]
        static = (item_id, title or item_id, c["brand"][row], None if price is None or price != price else float(price),
                  c["currency"][row], tuple(c["categories"][row] or ()), bool(self.attrs.available[row]), title)
        if len(self._static_cards) >= _STATIC_CARDS:
            self._static_cards.clear()
        self._static_cards[row] = static
        return static

    # ---- item pages and trending ---------------------------------------------------------------------

    def neighbours(self, item_id: str, k: int, relations: tuple[str, ...]) -> dict[str, Any] | None:
        """Items next to `item_id` in the sources whose model is named in `relations` (in that order of preference),
        explained by the source that proposed each first."""
        row = self.index.get(item_id)
        if row is None or self.pipeline is None:
            return None
        found = self.pipeline.neighbours(row, relations)
        rows = np.fromiter(found, np.int64, len(found))
        scores = np.array([v[0] for v in found.values()])
        chosen = apply_rules(rows, scores, k, attrs=self.attrs, rules=self.settings.rules.model_copy(
            update={"max_per_brand": None, "diversity": 0.0}), index=self.index, exclude=[row])
        title = self.title(row) or item_id
        items = []
        for r, s in zip(chosen.rows, chosen.scores, strict=True):
            kind, text = found[int(r)][1].neighbour_reason(title)
            items.append(self.card(int(r), float(s), {"type": kind, "text": text, "item_id": item_id}))
        return {"item": self.card(row), "items": items, "model_version": self.version}

    def trending(self, k: int, filters: Filters | None = None) -> list[dict[str, Any]]:
        return self._trending(k, filters, []).cards()

    def _trending(self, k: int, filters: Filters | None, exclude: np.ndarray) -> _Greedy:
        trend = self.pipeline.trend if self.pipeline is not None else np.zeros(len(self.item_ids), np.float32)
        popularity = self.pipeline.popularity if self.pipeline is not None else trend
        key = trend.astype(np.float64) + 1e-6 * popularity
        top = np.argsort(-key, kind="stable")[: max(k * 20, 200)]
        chosen = self._rules(top, key[top], k, exclude, filters)
        rows, scores = chosen.rows.tolist(), chosen.scores.tolist()

        def build(i: int) -> dict[str, Any]:
            where = self.category(rows[i])
            return self.card(rows[i], scores[i], {"type": "trending",
                                                  "text": f"Trending in {where}" if where else "Trending now"})

        # a pin placed in trending's own list is no pin of the list it fills (its position there means nothing)
        return _Greedy(rows, [False] * len(rows), build)

    # ---- the shopper's own surfaces: recently viewed, buy it again ----------------------------------

    def recently_viewed(self, user_id: str, live: list[LiveEvent], erased: bool, k: int) -> list[dict[str, Any]]:
        """Items the shopper viewed, newest first, each once, in stock only: the bundle's copy of their past
        (not after an erasure), then their live events."""
        seen: list[tuple[int, int]] = []  # (timestamp us, row)
        user = -1 if erased else self.bundle.users.index.get(user_id, -1)
        if user >= 0 and self.bundle.histories is not None:
            rows, codes, times = self.bundle.histories.of(user)
            view = EVENT_TYPES.index("view")
            seen += [(int(t), int(r)) for r, c, t in zip(rows, codes, times, strict=True) if c == view]
        seen += [(ts, self.index[item]) for item, kind, ts in live if kind == "view" and item in self.index]
        out: list[dict[str, Any]] = []
        shown: set[int] = set()
        for ts, row in sorted(seen, reverse=True):
            if row in shown or not self.attrs.available[row]:
                continue
            shown.add(row)
            when = datetime.fromtimestamp(ts / 1e6, UTC).isoformat(timespec="seconds")
            out.append(self.card(row, None, {"type": "recently_viewed", "text": "You viewed this",
                                             "viewed_at": when}))
            if len(out) == k:
                break
        return out

    def buy_again(self, user_id: str, live: list[LiveEvent], erased: bool, k: int, now_us: int
                  ) -> list[dict[str, Any]] | None:
        """The shopper's past purchases that are due again at `now_us`, in stock only (None: the bundle has no
        repeat-purchase model). Purchases come from the model's copy of the shopper's past (not after an erasure)
        and from their live purchase events, so a purchase posted a moment ago counts at once."""
        model = self.bundle.repeat
        if model is None:
            return None
        user = -1 if erased else self.bundle.users.index.get(user_id, -1)
        items, times = model.purchases_of(user)
        bought = [(self.index[item], ts) for item, kind, ts in live if kind == "purchase" and item in self.index]
        if bought:
            items = np.concatenate([items, np.array([b[0] for b in bought], np.int64)])
            times = np.concatenate([times, np.array([b[1] for b in bought], np.int64)])
        due = model.due(items, times, now_us, user=user, k=max(k * 3, 30))
        return [self.card(d.item, d.score, d.reason()) for d in due if self.attrs.available[d.item]][:k]

    # ---- search --------------------------------------------------------------------------------------

    def affinity(self, query: Query) -> dict[str, dict[str, float]]:
        """Brand and category shares of a shopper's recent history (search personalisation)."""
        recent = query.history[-20:]
        out: dict[str, dict[str, float]] = {"brands": {}, "categories": {}}
        for name, codes, names in (("brands", self.attrs.brand, self.attrs.brand_names),
                                   ("categories", self.attrs.leaf, self.attrs.leaf_names)):
            found = codes[recent]
            found = found[found >= 0]
            if len(found):
                values, counts = np.unique(found, return_counts=True)
                out[name] = {names[v]: float(n / counts.max()) for v, n in zip(values, counts, strict=True)}
        return out

    @cached_property
    def refiner(self) -> Refiner:
        """Conversational refinement over this runtime's search catalog (built on first use)."""
        assert self.search is not None
        return refiner_for(self.search)

    def search_json(self, query: str, *, filters: Filters, sort: str, page: int, page_size: int,
                    affinity: dict[str, dict[str, float]] | None) -> dict[str, Any]:
        """A search answer as a JSON-ready dict: the engine's result, each hit with its card and explanation."""
        assert self.search is not None
        t0 = time.perf_counter()
        res = self.search.search(query, filters=filters, sort=sort, page=page, page_size=page_size,  # type: ignore[arg-type]
                                 user_affinity=affinity)
        out = res.to_json()
        for hit in out["hits"]:
            row = self.index.get(hit["item_id"])
            if row is not None:
                hit.update({k: v for k, v in self.card(row).items() if k not in hit or hit[k] is None})
            hit["explanation"] = explain_hit(hit, query=out["query"]["corrected"], filters=out["filters"],
                                             affinity=affinity)
        out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        out["model_version"] = self.version
        return out

    def search_body(self, query: str, *, filters: Filters, sort: str, page: int, page_size: int,
                    affinity: dict[str, dict[str, float]] | None) -> tuple[bytes, list[tuple[str, float]]]:
        """The JSON response body of a search, and the (item id, score) of the hits it shows. Unpersonalised
        answers are cached as their serialized bytes: a repeat is a dictionary lookup, and the cache holds a few
        objects per entry instead of a tree of dicts and lists that every full garbage collection of the worker
        would have to walk."""
        assert self.search is not None
        key = None
        if not affinity or not any(affinity.values()):
            affinity = None
            key = (query, json.dumps(filters.to_json(), sort_keys=True), sort, page, page_size)
            hit = self._search_cache.get(key)
            if hit is not None:
                self._search_cache.move_to_end(key)
                return hit
        out = self.search_json(query, filters=filters, sort=sort, page=page, page_size=page_size, affinity=affinity)
        shown = [(h["item_id"], float(h["score"])) for h in out["hits"]]
        body = orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)[:-1]  # serialized once; the flag closes it
        if key is not None and self.settings.search_cache:
            self._search_cache[key] = (body + b',"cached":true}', shown)
            if len(self._search_cache) > self.settings.search_cache:
                self._search_cache.popitem(last=False)
        return body + b',"cached":false}', shown


__all__ = ["Runtime"]
