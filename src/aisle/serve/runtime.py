"""`Runtime`: one loaded bundle plus the catalog upserts made since, answering requests synchronously.

A Runtime never changes after it is built; a hot swap or a catalog upsert builds a new one (sharing the heavy
arrays) and replaces the reference, so a request that started on the old one finishes on it. Everything a
request needs is precomputed here: id -> index maps, card columns, neighbour tables (in the pipeline), the
search engine. Per request the work is a few small numpy operations over a few hundred candidates.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import polars as pl

from aisle.bundle import Bundle
from aisle.config import Settings
from aisle.models.base import EVENT_WEIGHTS, QueryBatch
from aisle.optimize.serving import indexed_online
from aisle.pipeline import Pipeline, item_attributes
from aisle.rules import ItemAttributes, ItemFilters, apply_rules
from aisle.serve.state import LiveEvent
from aisle.types import EVENT_TYPES, ITEM_SCHEMA, conform

_POSITIVE = {t for t, w in EVENT_WEIGHTS.items() if w > 0}
_VERB = {"purchase": "bought", "add_to_cart": "added", "favorite": "saved", "rating": "rated"}
_SEQUENTIAL = {"sasrec", "gru4rec", "markov"}


@dataclass(frozen=True)
class History:
    items: np.ndarray  # item indices, oldest first (unknown items dropped)
    types: list[str]
    user_idx: int  # -1: unknown or erased
    live: int  # events from the live state


class Runtime:
    def __init__(self, bundle: Bundle, settings: Settings, upserts: Sequence[dict[str, Any]] = (),
                 embedder: Any = None, search: Any = None) -> None:
        self.bundle, self.settings, self.embedder = bundle, settings, embedder
        self.version = bundle.version
        self.loaded_at = time.time()
        base = bundle.catalog if bundle.catalog is not None else pl.DataFrame({"item_id": []}, schema={
            "item_id": pl.String})
        ids = list(bundle.items.ids)
        ups = conform(pl.DataFrame(list(upserts), schema_overrides={"categories": pl.List(pl.String)},
                                   strict=False), ITEM_SCHEMA) if upserts else None
        new_ids = [i for i in (ups["item_id"].to_list() if ups is not None else []) if i not in bundle.items.index]
        self.item_ids: list[str] = ids + list(dict.fromkeys(new_ids))
        self.index = {i: n for n, i in enumerate(self.item_ids)}
        frame = pl.DataFrame({"item_id": pl.Series(self.item_ids, dtype=pl.String)})
        cat = conform(base, ITEM_SCHEMA) if base.height else conform(base, ITEM_SCHEMA).clear()
        if ups is not None:
            cat = pl.concat([cat.filter(~pl.col("item_id").is_in(ups["item_id"].implode())), ups])
        self.catalog = frame.join(cat.unique("item_id", keep="last"), on="item_id", how="left", maintain_order="left")
        self.cards = {c: self.catalog[c].to_list() for c in ("title", "brand", "price", "currency", "categories")}
        self.attrs: ItemAttributes = item_attributes(self.catalog, len(self.item_ids))
        self.pipeline: Pipeline | None = bundle.pipeline.with_items(self.attrs) if bundle.pipeline else None
        self.extra: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        self.own: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # new items' own content neighbours
        if new_ids and self.pipeline is not None:
            self._cold_start([self.index[i] for i in dict.fromkeys(new_ids)])
        self.search = search if search is not None else bundle.search
        self.n_users = len(bundle.users)
        # live sessions are scored per request on small catalogs, and on any catalog whose user sources are
        # served from an ANN index ([inference] ann_min_items)
        self.online = len(self.item_ids) <= settings.online_max_items or indexed_online(self.pipeline)
        self._search_cache: OrderedDict[Any, bytes] = OrderedDict()

    # ---- cold start ----------------------------------------------------------------------------------

    def _cold_start(self, rows: list[int]) -> None:
        """New items get neighbours now and become candidates next to the items they resemble: by the content
        model's text vectors, else the search index's vectors, else shared leaf category and brand."""
        pipe = self.pipeline
        assert pipe is not None
        i2i = [s for s in pipe.sources if s.kind == "i2i"]
        if not i2i:
            return
        key = next((s.key for s in i2i if s.model == "content"), i2i[0].key)
        sims = self._content_sims(rows, key)
        k = pipe.config.neighbours
        n_old = len(self.bundle.items)
        reverse: dict[int, list[tuple[int, float]]] = {}
        for row, s in zip(rows, sims, strict=True):
            s[row] = -np.inf
            s[n_old:] = -np.inf  # new items are not each other's evidence
            top = np.argsort(-s, kind="stable")[:k]
            top = top[np.isfinite(s[top]) & (s[top] > 0)]
            self.own[row] = (top.astype(np.int64), s[top].astype(np.float32))
            for j in top:
                reverse.setdefault(int(j), []).append((row, float(s[j])))
        self.extra[key] = {j: (np.array([r for r, _ in v], np.int64), np.array([x for _, x in v], np.float32))
                           for j, v in reverse.items()}

    def _content_sims(self, rows: list[int], key: str) -> np.ndarray:
        """(len(rows), n_items) similarity of each new item to every item."""
        assert self.pipeline is not None
        n = len(self.item_ids)
        emb = getattr(self.pipeline.models.get(key), "embeddings", None)
        if emb is not None and self.embedder is not None:
            from aisle.models.content import item_texts

            vecs = self.embedder.embed_texts(item_texts(self.catalog[rows], len(rows)))
            return np.pad(vecs @ emb.T, ((0, 0), (0, n - emb.shape[0])), constant_values=-np.inf)
        engine = self.bundle.search
        if engine is not None and engine.dense is not None and engine.embedder is not None:
            from aisle.search.catalog import Catalog

            new = Catalog.from_items(self.catalog[rows])
            vecs = engine.embedder.embed_texts([new.embedding_text(i) for i in range(len(rows))])
            out = np.full((len(rows), n), -np.inf)
            at = np.array([self.index.get(i, -1) for i in engine.catalog.item_ids])
            out[:, at[at >= 0]] = (vecs @ engine.dense.vectors.T)[:, at >= 0]
            return out
        a = self.attrs
        same_leaf = (a.leaf[None, :] == a.leaf[rows][:, None]) & (a.leaf[rows][:, None] >= 0)
        same_brand = (a.brand[None, :] == a.brand[rows][:, None]) & (a.brand[rows][:, None] >= 0)
        pop = self.pipeline.popularity
        return np.where(same_leaf, 0.5 + 0.25 * same_brand + 0.1 * pop[None, :], -np.inf)

    # ---- histories -----------------------------------------------------------------------------------

    def history(self, user_id: str, live: list[LiveEvent], erased: bool, context: str | None = None) -> History:
        uidx = -1 if erased else self.bundle.users.index.get(user_id, -1)
        items: list[int] = []
        types: list[str] = []
        if uidx >= 0 and self.bundle.histories is not None:
            it, ty, _ = self.bundle.histories.of(uidx)
            items, types = it.tolist(), [EVENT_TYPES[t] for t in ty]
        for item, etype, _ts in live:
            i = self.index.get(item)
            if i is not None:
                items.append(i)
                types.append(etype)
        if context is not None and context in self.index:
            items.append(self.index[context])
            types.append("view")
        return History(np.asarray(items, np.int64), types, uidx, len(live))

    # ---- recommendations -----------------------------------------------------------------------------

    def recommend(self, h: History, k: int, *, filters: ItemFilters | None = None,
                  exclude: Sequence[str] = ()) -> dict[str, Any]:
        t0 = time.perf_counter()
        pipe = self.pipeline
        positive = np.array([t in _POSITIVE for t in h.types], bool)
        model_hist = h.items[positive] if len(h.items) else h.items
        excluded = self._excluded(h) + [self.index[e] for e in exclude if e in self.index]
        picks: list[dict[str, Any]] = []
        fast = self._precomputed(h, k, filters, excluded)
        if fast is not None:
            picks = fast
        elif pipe is not None:
            rows = self._user_rows(h)
            c = pipe.candidates(QueryBatch(np.array([h.user_idx]), [model_hist]), user_rows=rows, extra=self.extra,
                                exclude_history=False)
            scores = pipe.rank(c)
            sel = apply_rules(c.item, scores, k, attrs=self.attrs, rules=self.settings.rules, index=self.index,
                              exclude=excluded, filters=filters)
            n_old = len(self.bundle.items)
            sel = self._expose_new(sel, c.item, scores, k, excluded, filters, n_old)
            pos = {int(i): j for j, i in enumerate(c.item)}
            for r, s, pinned in zip(sel.rows, sel.scores, sel.pinned, strict=True):
                j = pos.get(int(r))
                why = self._why_pinned() if pinned or j is None else self._explain(
                    int(r), pipe.source_keys[int(c.best_source[j])], int(c.anchor[j]), h, new=r >= n_old)
                picks.append(self.card(int(r), float(s), why))
        if len(picks) < k:  # unknown shopper under narrow filters, or no pipeline: trending fills the list
            seen = {p["item_id"] for p in picks}
            for p in self._trending_cards(k, filters, excluded):
                if len(picks) >= k:
                    break
                if p["item_id"] not in seen:
                    picks.append(p)
        return {"items": picks, "took_ms": round((time.perf_counter() - t0) * 1000, 2),
                "model_version": self.version, "history_length": len(h.items), "live_events": h.live}

    def _precomputed(self, h: History, k: int, filters: ItemFilters | None, excluded: list[int]
                     ) -> list[dict[str, Any]] | None:
        """A known shopper with nothing new since the bundle: their ranked list from the bundle, under the rules.
        None (run the pipeline) when they have live events, the rules keep seen items, or filters leave < k."""
        ranked = self.bundle.ranked
        if (not ranked or h.live or h.user_idx < 0 or len(h.items) != self._bundle_len(h.user_idx)
                or self.settings.rules.exclude_seen != "all" or self.pipeline is None):
            return None
        u = h.user_idx
        items = ranked["items"][u]
        ok = items >= 0
        sel = apply_rules(items[ok], ranked["scores"][u][ok], k, attrs=self.attrs, rules=self.settings.rules,
                          index=self.index, exclude=excluded, filters=filters)
        if len(sel.rows) < k:
            return None
        keys = self.pipeline.source_keys
        where = {int(i): j for j, i in enumerate(items[ok])}
        out = []
        for r, s, pinned in zip(sel.rows, sel.scores, sel.pinned, strict=True):
            j = where.get(int(r))
            why = self._why_pinned() if pinned or j is None else self._explain(
                int(r), keys[int(ranked["source"][u][ok][j])], int(ranked["anchor"][u][ok][j]), h)
            out.append(self.card(int(r), float(s), why))
        return out

    def _bundle_len(self, u: int) -> int:
        hist = self.bundle.histories
        return int(hist.ptr[u + 1] - hist.ptr[u]) if hist is not None else 0

    def _expose_new(self, sel: Any, items: np.ndarray, scores: np.ndarray, k: int, excluded: list[int],
                    filters: ItemFilters | None, n_old: int) -> Any:
        """The `new_item_slot` rule: a new item among the candidates is shown at that position at the latest."""
        slot = self.settings.rules.new_item_slot
        if slot is None or n_old >= len(self.item_ids) or (sel.rows >= n_old).any():
            return sel
        new = items >= n_old
        if not new.any():
            return sel
        best = apply_rules(items[new], scores[new], 1, attrs=self.attrs, rules=self.settings.rules,
                           index=self.index, exclude=excluded, filters=filters)
        if not len(best.rows):
            return sel
        at = min(slot, k, len(sel.rows) + 1) - 1
        rows = np.insert(sel.rows, at, best.rows[0])[:k]
        sc = np.insert(sel.scores, at, sel.scores[at] if at < len(sel.scores) else best.scores[0])[:k]
        return type(sel)(rows, sc, np.insert(sel.pinned, at, False)[:k])

    def _user_rows(self, h: History) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """Precomputed lists for a known user, unless the catalog is small enough to score the live session."""
        pipe = self.pipeline
        assert pipe is not None
        user_keys = [s.key for s in pipe.sources if s.kind == "user"]
        empty = (np.zeros((1, 0), np.int32), np.zeros((1, 0), np.float32))
        if h.user_idx < 0 and not len(h.items):  # nothing to personalise on: trending and popularity decide
            return dict.fromkeys(user_keys, empty)
        if self.online and (h.live or h.user_idx < 0):
            return None
        if h.user_idx >= 0 and all(k in self.bundle.user_rows for k in user_keys):
            return {k: (self.bundle.user_rows[k][0][h.user_idx:h.user_idx + 1],
                        self.bundle.user_rows[k][1][h.user_idx:h.user_idx + 1]) for k in user_keys}
        if self.online:
            return None
        return dict.fromkeys(user_keys, empty)

    def _excluded(self, h: History) -> list[int]:
        mode = self.settings.rules.exclude_seen
        if mode == "none" or not len(h.items):
            return []
        if mode == "purchased":
            return [int(i) for i, t in zip(h.items, h.types, strict=True) if t == "purchase"]
        return [int(i) for i in h.items]

    def _explain(self, row: int, key: str, anchor: int, h: History, new: bool = False) -> dict[str, Any]:
        assert self.pipeline is not None
        src = next(s for s in self.pipeline.sources if s.key == key)
        title = self.cards["title"][anchor] if 0 <= anchor < len(self.item_ids) else None
        anchor_id = self.item_ids[anchor] if 0 <= anchor < len(self.item_ids) else None
        if new and title:
            return {"type": "similar", "text": f"New, and similar to {title}", "item_id": anchor_id}
        if src.kind == "trending":
            leaf = self.attrs.leaf[row]
            where = self.attrs.leaf_names[leaf] if leaf >= 0 else None
            return {"type": "trending", "text": f"Trending in {where}" if where else "Trending now"}
        if src.kind == "i2i" and title:
            if src.model == "fbt":
                return {"type": "bought_together", "text": f"Often bought with {title}", "item_id": anchor_id}
            if src.model == "content":
                return {"type": "similar", "text": f"Similar to {title}", "item_id": anchor_id}
            last = next((t for i, t in zip(h.items[::-1], h.types[::-1], strict=True) if i == anchor), "view")
            return {"type": "because_you", "text": f"Because you {_VERB.get(last, 'viewed')} {title}",
                    "item_id": anchor_id}
        if src.model in _SEQUENTIAL:
            return {"type": "session", "text": "Picked for what you are browsing now"}
        return {"type": "personal", "text": "Popular with shoppers like you"}

    @staticmethod
    def _why_pinned() -> dict[str, Any]:
        return {"type": "promoted", "text": "Featured"}

    def card(self, row: int, score: float | None = None, why: dict[str, Any] | None = None) -> dict[str, Any]:
        c = self.cards
        price = c["price"][row]
        out = {"item_id": self.item_ids[row], "title": c["title"][row] or self.item_ids[row], "brand": c["brand"][row],
               "price": None if price is None or price != price else float(price), "currency": c["currency"][row],
               "category": list(c["categories"][row] or []), "available": bool(self.attrs.available[row])}
        if score is not None:
            out["score"] = round(score, 5)
        if why is not None:
            out["explanation"] = why
        return out

    # ---- item pages and trending ---------------------------------------------------------------------

    def neighbours(self, item_id: str, k: int, models: Sequence[str]) -> dict[str, Any] | None:
        """Items next to `item_id` in the pipeline's tables of `models` (in that order of preference)."""
        row = self.index.get(item_id)
        pipe = self.pipeline
        if row is None or pipe is None:
            return None
        cand: dict[int, tuple[float, str]] = {}
        for s in pipe.sources:
            if s.kind != "i2i" or s.model not in models:
                continue
            nb, ns = pipe.tables[s.key]
            idx, sc = (nb[row], ns[row]) if row < len(nb) else self.own.get(row, (np.zeros(0, np.int64), []))
            weight = 1.0 / (1 + models.index(s.model))
            more = self.extra.get(s.key, {}).get(row)
            if more is not None:
                idx, sc = np.concatenate([more[0], idx]), np.concatenate([more[1], sc])
            for rank, (j, v) in enumerate(zip(idx, sc, strict=True)):
                if j >= 0 and v > 0:
                    prev = cand.get(int(j), (0.0, s.model))
                    cand[int(j)] = (prev[0] + weight / (1 + rank), prev[1] if prev[0] else s.model)
        rows = np.fromiter(cand, np.int64, len(cand))
        scores = np.array([v[0] for v in cand.values()])
        sel = apply_rules(rows, scores, k, attrs=self.attrs, rules=self.settings.rules.model_copy(
            update={"max_per_brand": None, "diversity": 0.0}), index=self.index, exclude=[row])
        title = self.cards["title"][row] or item_id
        texts = {"fbt": f"Often bought with {title}", "content": f"Similar to {title}"}
        items = [self.card(int(r), float(s), {"type": "bought_together" if cand[int(r)][1] == "fbt" else "similar",
                                               "text": texts.get(cand[int(r)][1], f"Shoppers who viewed {title} "
                                                                                  "also viewed this"),
                                               "item_id": item_id}) for r, s in zip(sel.rows, sel.scores, strict=True)]
        return {"item": self.card(row), "items": items, "model_version": self.version}

    def trending(self, k: int, filters: ItemFilters | None = None) -> list[dict[str, Any]]:
        return self._trending_cards(k, filters, [])

    def _trending_cards(self, k: int, filters: ItemFilters | None, exclude: list[int]) -> list[dict[str, Any]]:
        trend = self.pipeline.trend if self.pipeline is not None else np.zeros(len(self.item_ids), np.float32)
        pop = self.pipeline.popularity if self.pipeline is not None else trend
        key = trend.astype(np.float64) + 1e-6 * pop
        top = np.argsort(-key, kind="stable")[: max(k * 20, 200)]
        sel = apply_rules(top, key[top], k, attrs=self.attrs, rules=self.settings.rules, index=self.index,
                          exclude=exclude, filters=filters)
        out = []
        for r, s in zip(sel.rows, sel.scores, strict=True):
            leaf = self.attrs.leaf[r]
            where = self.attrs.leaf_names[leaf] if leaf >= 0 else None
            out.append(self.card(int(r), float(s), {"type": "trending",
                                                    "text": f"Trending in {where}" if where else "Trending now"}))
        return out

    # ---- search --------------------------------------------------------------------------------------

    def affinity(self, h: History) -> dict[str, dict[str, float]]:
        """Brand and category shares of a shopper's recent history (search personalisation)."""
        recent = h.items[-20:]
        out: dict[str, dict[str, float]] = {"brands": {}, "categories": {}}
        for name, codes, names in (("brands", self.attrs.brand, self.attrs.brand_names),
                                   ("categories", self.attrs.leaf, self.attrs.leaf_names)):
            c = codes[recent]
            c = c[c >= 0]
            if len(c):
                vals, counts = np.unique(c, return_counts=True)
                out[name] = {names[v]: float(n / counts.max()) for v, n in zip(vals, counts, strict=True)}
        return out

    def search_body(self, query: str, *, filters: Any, sort: str, page: int, page_size: int,
                    affinity: dict[str, dict[str, float]] | None) -> bytes:
        """The JSON response body of a search. Unpersonalised answers are cached as their serialized bytes:
        a repeat is a dictionary lookup, and the cache holds one object per entry instead of a tree of dicts
        and lists that every full garbage collection of the worker would have to walk."""
        assert self.search is not None
        key = None
        if not affinity or not any(affinity.values()):
            affinity = None
            key = (query, json.dumps(filters.to_json(), sort_keys=True), sort, page, page_size)
            hit = self._search_cache.get(key)
            if hit is not None:
                self._search_cache.move_to_end(key)
                return hit
        t0 = time.perf_counter()
        res = self.search.search(query, filters=filters, sort=sort, page=page, page_size=page_size,  # type: ignore[arg-type]
                                 user_affinity=affinity)
        out = res.to_json()
        for hit in out["hits"]:
            row = self.index.get(hit["item_id"])
            if row is not None:
                hit.update({k: v for k, v in self.card(row).items() if k not in hit or hit[k] is None})
        out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        out["model_version"] = self.version
        body = orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)[:-1]  # serialized once; the flag closes it
        if key is not None and self.settings.search_cache:
            self._search_cache[key] = body + b',"cached":true}'
            if len(self._search_cache) > self.settings.search_cache:
                self._search_cache.popitem(last=False)
        return body + b',"cached":false}'


__all__ = ["History", "Runtime"]
