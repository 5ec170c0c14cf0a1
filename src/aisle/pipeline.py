"""The recommendation pipeline: candidate sources -> merge and dedupe -> learned combiner, in plain code.

Sources, each a registry model used through its public protocol:

* `user` sources (a sequential model on the session, MF) score the whole catalog for a query's history and
  give their top `per_source` items. Serving runs them per request on small catalogs and reads per-user lists
  precomputed at train time on large ones (`precompute`), because a full-catalog pass per request costs more
  than the whole rest of the request there.
* `i2i` sources (item-kNN, Markov transitions, bought-together, content) are precomputed neighbour tables
  (`neighbours` per item; content through a faiss index over its embeddings); a query sums the neighbours of
  its last `window` items, each weighted `decay ** distance from the end`, so the very next event moves them.
* `trending` gives the top trending items, the fallback for a visitor with no history.

The merged candidates get one feature row each (per source: summed score and reciprocal rank; popularity,
trending, price, share of the history in the item's category and brand, ...) and a LightGBM lambdarank
combiner orders them. `fit` trains the combiner without leakage: each user's last event is held out, the
sources are fitted on the rest, the combiner learns to rank the held-out item among its candidates, and then
the sources are refitted on everything (under the evaluation harness that held-out event is exactly the
validation target; the test target is never seen). Models that read no events (content) are fitted once.
`Pipeline` is itself a Recommender: `score` puts candidates above every other item, which keeps popularity order.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, Recommender, TrainData
from aisle.rules import ItemAttributes

KINDS = ("user", "i2i", "trending")


@dataclass(frozen=True)
class Source:
    key: str
    model: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    refit: bool = True  # False: the model reads no events (content), so one fit serves both stages
    window: int | None = None  # i2i: last items used (default: the pipeline's window)
    decay: float | None = None  # i2i: weight of the item d steps before the last, decay ** d


DEFAULT_SOURCES: tuple[Source, ...] = (
    Source("sasrec", "sasrec", "user", {"max_seconds": 120.0, "progress": False}),
    Source("als", "als", "user", {"factors": 64}),
    Source("itemknn", "itemknn", "i2i", decay=0.7),
    Source("markov", "markov", "i2i", window=5, decay=0.5),
    Source("fbt", "fbt", "i2i"),
    Source("trending", "trending", "trending"),
)
#: Add to `sources` for text similarity between items: MiniLM over descriptions costs ~0.2 s per item on a 2-core
#: CPU, so it is opt-in; cold start works without it (search vectors, else shared category and brand).
CONTENT_SOURCE = Source("content", "content", "i2i", refit=False)

LGB_PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "metric": "ndcg", "ndcg_eval_at": [10], "learning_rate": 0.05, "num_leaves": 15,
    "max_depth": 6,
    "min_data_in_leaf": 50, "feature_fraction": 0.8, "lambda_l2": 10.0, "verbose": -1, "deterministic": True,
    "force_row_wise": True, "num_threads": 1,
}


@dataclass(frozen=True)
class PipelineConfig:
    sources: tuple[Source, ...] = DEFAULT_SOURCES
    per_source: int = 50
    neighbours: int = 50
    window: int = 20
    decay: float = 0.8
    trending: int = 30
    max_train_queries: int = 5_000
    rounds: int = 80
    holdout_fraction: float = 0.2  # of the combiner's queries, to choose between it and the best single source
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "sources": [asdict(s) for s in self.sources]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PipelineConfig:
        return cls(**{**d, "sources": tuple(Source(**s) for s in d.get("sources", ()))})


def model_class(name: str) -> type:
    from aisle.models.registry import MODELS

    if name in MODELS:
        return MODELS[name]
    from aisle.models import sequential

    fallback = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}
    if name in fallback:
        return getattr(sequential, fallback[name])
    raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def available_sources(sources: tuple[Source, ...]) -> tuple[Source, ...]:
    """The sources whose model this installation has."""
    out = []
    for s in sources:
        try:
            model_class(s.model)
        except (KeyError, ImportError):
            continue
        out.append(s)
    return tuple(out)


def item_attributes(catalog: pl.DataFrame | None, n_items: int) -> ItemAttributes:
    """Brand / leaf category codes, price and availability per item index of an aligned catalog."""
    if catalog is None or catalog.is_empty():
        z = np.full(n_items, -1, np.int32)
        return ItemAttributes(z, z.copy(), np.full(n_items, np.nan), np.ones(n_items, bool), [], [], [()] * n_items)
    brands = catalog["brand"].to_list() if "brand" in catalog.columns else [None] * catalog.height
    paths = [tuple(p or ()) for p in catalog["categories"].to_list()] if "categories" in catalog.columns \
        else [()] * catalog.height
    price = catalog["price"].cast(pl.Float64).fill_null(np.nan).to_numpy() if "price" in catalog.columns \
        else np.full(catalog.height, np.nan)
    avail = catalog["available"].fill_null(True).to_numpy().astype(bool) if "available" in catalog.columns \
        else np.ones(catalog.height, bool)
    brand_names = sorted({b for b in brands if b})
    leaf_names = sorted({p[-1] for p in paths if p})
    bi, li = {b: i for i, b in enumerate(brand_names)}, {c: i for i, c in enumerate(leaf_names)}
    pad = n_items - catalog.height
    return ItemAttributes(
        brand=np.array([bi.get(b, -1) if b else -1 for b in brands] + [-1] * pad, np.int32),
        leaf=np.array([li[p[-1]] if p else -1 for p in paths] + [-1] * pad, np.int32),
        price=np.concatenate([np.asarray(price, np.float64), np.full(pad, np.nan)]),
        available=np.concatenate([avail, np.ones(pad, bool)]),
        brand_names=brand_names, leaf_names=leaf_names, paths=paths + [()] * pad)


@dataclass
class Candidates:
    """The candidates of a batch as flat rows sorted by query: which item, its features, and for explanations
    the source that ranks it best and that source's anchor (the history item it came from, or -1)."""

    query: np.ndarray
    item: np.ndarray
    features: np.ndarray
    best_source: np.ndarray
    anchor: np.ndarray


class Pipeline:
    name: ClassVar[str] = "pipeline"
    search_space: ClassVar[dict[str, list[Any]]] = {}

    def __init__(self, config: PipelineConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        cfg = config or PipelineConfig()
        self.config = replace(cfg, seed=seed, **overrides) if (seed or overrides) else cfg
        self.sources = available_sources(self.config.sources)
        self.models: dict[str, Recommender] = {}
        self.tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.popularity = np.zeros(0, np.float32)
        self.trend = np.zeros(0, np.float32)
        self.top_trending = np.zeros(0, np.int64)
        self.attrs: ItemAttributes | None = None
        self.combiner: Any = None
        self.ranker = "combiner"  # or the key of the source whose own score ranks best on held-out queries
        self.selection: dict[str, float] = {}
        self.n_items = 0

    @property
    def source_keys(self) -> list[str]:
        return [s.key for s in self.sources]

    @property
    def feature_names(self) -> list[str]:
        per = [f"{s.key}_{x}" for s in self.sources for x in ("score", "rr", "last")]
        return [*per, "popularity", "trending", "log_price", "leaf_share", "brand_share", "same_leaf_as_last",
                "price_ratio", "n_sources", "history_len"]

    # ---- fitting -------------------------------------------------------------------------------------

    def fit(self, data: TrainData) -> Self:
        self.n_items = data.n_items
        self.attrs = item_attributes(data.catalog, data.n_items)
        once = {s.key: self._fit_source(s, data) for s in self.sources if not s.refit}
        inner, users, targets = hold_out_last(data)
        self._install({s.key: once.get(s.key) or self._fit_source(s, inner) for s in self.sources}, inner)
        self.combiner = self._fit_combiner(inner, users, targets)
        self._install({s.key: once.get(s.key) or self._fit_source(s, data) for s in self.sources}, data)
        return self

    def _fit_source(self, source: Source, data: TrainData) -> Recommender:
        cls = model_class(source.model)
        kwargs = dict(source.params)
        try:
            if "seed" in inspect.signature(cls).parameters:
                kwargs.setdefault("seed", self.config.seed)
        except (TypeError, ValueError):
            pass
        return cls(**kwargs).fit(data)

    def _install(self, models: dict[str, Recommender], data: TrainData) -> None:
        self.models = models
        ev = data.events.filter(pl.col("weight") > 0)
        counts = np.bincount(ev["item_idx"].to_numpy(), minlength=data.n_items).astype(np.float64)
        self.popularity = (np.log1p(counts) / max(np.log1p(counts).max(), 1e-9)).astype(np.float32)
        self.tables = {s.key: neighbour_table(models[s.key], data.n_items, self.config.neighbours)
                       for s in self.sources if s.kind == "i2i"}
        trend = next((np.asarray(getattr(models[s.key], "counts", counts), np.float64) for s in self.sources
                      if s.kind == "trending"), counts)
        self.trend = (trend / max(trend.max(), 1e-12)).astype(np.float32)
        self.top_trending = np.argsort(-self.trend, kind="stable")[: self.config.trending].astype(np.int64)

    def _fit_combiner(self, inner: TrainData, users: np.ndarray, targets: np.ndarray) -> Any:
        rng = np.random.default_rng(self.config.seed)
        if len(users) > self.config.max_train_queries:
            pick = np.sort(rng.choice(len(users), self.config.max_train_queries, replace=False))
            users, targets = users[pick], targets[pick]
        seqs = inner.sequences()
        xs, ys, groups = [], [], []
        for a in range(0, len(users), 512):
            u = users[a:a + 512]
            c = self.candidates(QueryBatch(u, [seqs[i] for i in u]))
            y = (c.item == targets[a:a + 512][c.query]).astype(np.float32)
            sizes = np.bincount(c.query, minlength=len(u))
            pos = np.bincount(c.query, weights=y, minlength=len(u)) > 0
            keep = pos[c.query]
            xs.append(c.features[keep])
            ys.append(y[keep])
            groups += sizes[pos].tolist()
        if not groups:
            return None
        x, y, sizes = np.vstack(xs), np.concatenate(ys), np.asarray(groups)
        held = rng.random(len(sizes)) < self.config.holdout_fraction
        if held.any() and (~held).any():
            rows = np.repeat(held, sizes)
            model = self._train(x[~rows], y[~rows], sizes[~held])
            xv, yv, sv = x[rows], y[rows], sizes[held]
            self.selection = {"combiner": _ndcg10(model.predict(xv, num_threads=1), yv, sv)}
            for i, key in enumerate(self.source_keys):
                self.selection[key] = _ndcg10(xv[:, 3 * i], yv, sv)
            best = max(self.selection, key=lambda k: (self.selection[k], k == "combiner"))
            self.ranker = best
            if best != "combiner":
                return None
        return self._train(x, y, sizes)

    def _train(self, x: np.ndarray, y: np.ndarray, sizes: np.ndarray) -> Any:
        import lightgbm as lgb

        ds = lgb.Dataset(x, y, group=sizes.tolist(), feature_name=self.feature_names)
        return lgb.train({**LGB_PARAMS, "seed": self.config.seed}, ds, num_boost_round=self.config.rounds)

    # ---- candidates ----------------------------------------------------------------------------------

    def candidates(self, batch: QueryBatch, *, user_rows: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                   extra: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] | None = None,
                   exclude_history: bool = True) -> Candidates:
        """Merged, deduplicated candidates with features for every query of `batch`.

        `user_rows[key]` = (items, scores) of shape (batch, n) replaces running user source `key`;
        `extra[key][item]` = (items, scores) adds neighbours to an i2i table (cold-start items added at run time).
        """
        n_b = len(batch)
        hist = [np.asarray(h, np.int64) for h in batch.histories]
        hist = [h[(h >= 0) & (h < len(self.popularity))] for h in hist]
        model_hist = [h[h < self.n_items] for h in hist]
        parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        lens = np.fromiter((len(h) for h in hist), np.int64, n_b)
        win = [h[-self.config.window:] for h in hist]
        wlen = np.fromiter((len(h) for h in win), np.int64, n_b)
        wq = np.repeat(np.arange(n_b), wlen)
        witems = np.concatenate(win) if wlen.sum() else np.zeros(0, np.int64)
        dist = np.repeat(np.cumsum(wlen), wlen) - np.arange(len(witems)) - 1
        for sid, s in enumerate(self.sources):
            if s.kind == "user":
                if user_rows is not None and s.key in user_rows:
                    idx, sc = user_rows[s.key]
                elif hasattr(self.models[s.key], "top_n"):  # an aisle.index.Retriever: no full-catalog pass
                    idx, sc = self.models[s.key].top_n(QueryBatch(batch.user_idx, model_hist), self.config.per_source)
                else:
                    idx, sc = top_n(self.models[s.key].score(QueryBatch(batch.user_idx, model_hist)),
                                    self.config.per_source)
                q = np.repeat(np.arange(n_b), idx.shape[1])
                ok = idx.ravel() >= 0
                v = sc.ravel()[ok].astype(np.float64)
                parts.append((sid, q[ok], idx.ravel()[ok], v, np.full(ok.sum(), -1), v))
            elif s.kind == "i2i":
                nb, ns = self.tables[s.key]
                wweight = np.power(self.config.decay if s.decay is None else s.decay, dist)
                inside = (witems < len(nb)) & (dist < (s.window or self.config.window))
                a = witems[inside]
                items, scores = nb[a].ravel(), (ns[a] * wweight[inside][:, None]).ravel()
                q = np.repeat(wq[inside], nb.shape[1])
                anchors = np.repeat(a, nb.shape[1])
                last = np.repeat(dist[inside] == 0, nb.shape[1])
                more = (extra or {}).get(s.key)
                if more:
                    add = [(j, *more[int(it)]) for j, it in enumerate(witems)
                           if int(it) in more and dist[j] < (s.window or self.config.window)]
                    if add:
                        items = np.concatenate([items, *[x[1] for x in add]])
                        scores = np.concatenate([scores, *[x[2] * wweight[x[0]] for x in add]])
                        q = np.concatenate([q, *[np.full(len(x[1]), wq[x[0]]) for x in add]])
                        anchors = np.concatenate([anchors, *[np.full(len(x[1]), witems[x[0]]) for x in add]])
                        last = np.concatenate([last, *[np.full(len(x[1]), dist[x[0]] == 0) for x in add]])
                ok = items >= 0
                sc_ok = scores[ok].astype(np.float64)
                parts.append((sid, q[ok], items[ok].astype(np.int64), sc_ok, anchors[ok], sc_ok * last[ok]))
            else:
                t = self.top_trending
                v = np.tile(self.trend[t].astype(np.float64), n_b)
                parts.append((sid, np.repeat(np.arange(n_b), len(t)), np.tile(t, n_b), v, np.full(n_b * len(t), -1),
                              v))
        return self._merge(parts, n_b, hist, win, wq, witems, lens, exclude_history)

    def _merge(self, parts: list, n_b: int, hist: list[np.ndarray], win: list[np.ndarray], wq: np.ndarray,
               witems: np.ndarray, lens: np.ndarray, exclude_history: bool) -> Candidates:
        """One pass over all sources' rows at once (a few vectorised ops, whatever the number of sources)."""
        n_ext, n_src = len(self.popularity), len(self.sources)
        if parts:
            src = np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts])
            q = np.concatenate([p[1] for p in parts]).astype(np.int64)
            it = np.concatenate([p[2] for p in parts]).astype(np.int64)
            sc, anc, lc = (np.concatenate([p[k] for p in parts]) for k in (3, 4, 5))
        else:
            src = q = it = anc = np.zeros(0, np.int64)
            sc = lc = np.zeros(0)
        uniq, inv = np.unique(q * n_ext + it, return_inverse=True)
        m = len(uniq)
        cell = inv * n_src + src
        score = np.bincount(cell, weights=sc, minlength=m * n_src)
        lastc = np.bincount(cell, weights=lc, minlength=m * n_src)
        present = np.bincount(cell, minlength=m * n_src) > 0
        anchor = np.full(m * n_src, -1, np.int64)
        o = np.lexsort((sc, cell))  # per (candidate, source) its largest contribution last
        ends = np.r_[cell[o][1:] != cell[o][:-1], True] if len(o) else np.zeros(0, bool)
        anchor[cell[o][ends]] = anc[o][ends]
        cells = np.flatnonzero(present)
        c_src, c_q = cells % n_src, uniq[cells // n_src] // n_ext
        order = np.lexsort((-score[cells], c_q, c_src))
        group = (c_src * n_b + c_q)[order]
        first = np.searchsorted(group, group)
        rr = np.zeros(m * n_src)
        rr[cells[order]] = 1.0 / (1.0 + np.arange(len(order)) - first)
        score, lastc, rr, anchor = (a.reshape(m, n_src) for a in (score, lastc, rr, anchor))
        query, item = uniq // n_ext, uniq % n_ext
        keep = np.ones(m, bool)
        if exclude_history and lens.sum():
            hk = np.concatenate([np.full(len(h), i) * n_ext + h for i, h in enumerate(hist)])
            keep = ~np.isin(uniq, hk)
        attrs = self.attrs
        assert attrs is not None
        per_source = np.stack([score, rr, lastc], axis=2).reshape(m, 3 * n_src)
        ctx = self._context_features(query, item, attrs.leaf[item], attrs.brand[item], win, wq, witems, lens, rr)
        x = np.column_stack([per_source, *ctx])
        best = np.argmax(rr, axis=1) if n_src else np.zeros(m, np.int64)
        return Candidates(query[keep], item[keep], x[keep].astype(np.float32), best[keep],
                          anchor[np.arange(m), best][keep] if n_src else np.full(int(keep.sum()), -1))

    def _context_features(self, query: np.ndarray, item: np.ndarray, leaf: np.ndarray, brand: np.ndarray,
                          win: list[np.ndarray], wq: np.ndarray, witems: np.ndarray, lens: np.ndarray,
                          rr: np.ndarray) -> list[np.ndarray]:
        attrs = self.attrs
        assert attrs is not None
        wlen = np.maximum(np.bincount(wq, minlength=len(lens)), 1)

        def share(codes_hist: np.ndarray, codes_cand: np.ndarray, width: int) -> np.ndarray:
            ok = codes_hist >= 0
            key = wq[ok] * (width + 1) + codes_hist[ok]
            u, c = np.unique(key, return_counts=True)
            ck = query * (width + 1) + codes_cand
            pos = np.clip(np.searchsorted(u, ck), 0, max(len(u) - 1, 0))
            hit = (codes_cand >= 0) & (len(u) > 0) & (u[pos] == ck) if len(u) else np.zeros(len(ck), bool)
            return np.where(hit, c[pos] if len(u) else 0, 0) / wlen[query]

        hl, hb = attrs.leaf[witems], attrs.brand[witems]
        last_leaf = np.full(len(lens), -2, np.int64)
        ends = np.cumsum(np.bincount(wq, minlength=len(lens))) - 1
        has = np.bincount(wq, minlength=len(lens)) > 0
        last_leaf[has] = hl[ends[has]]
        price = attrs.price[item]
        hp = attrs.price[witems]
        med = np.full(len(lens), np.nan)
        for q in np.flatnonzero(has):  # per query, tiny
            vals = hp[wq == q]
            vals = vals[np.isfinite(vals)]
            med[q] = np.median(vals) if len(vals) else np.nan
        ratio = np.log(price / med[query])
        return [self.popularity[item], self.trend[item], np.nan_to_num(np.log1p(np.nan_to_num(price, nan=0.0))),
                share(hl, leaf, len(attrs.leaf_names)), share(hb, brand, len(attrs.brand_names)),
                (leaf >= 0) & (leaf == last_leaf[query]), np.nan_to_num(ratio, nan=0.0, posinf=0.0, neginf=0.0),
                (rr > 0).sum(axis=1), np.log1p(lens[query])]

    def rank(self, c: Candidates) -> np.ndarray:
        """The combiner's score per candidate (the summed reciprocal ranks when there is no combiner)."""
        if not len(c.item):
            return np.zeros(0)
        if self.ranker in self.source_keys:
            i = self.source_keys.index(self.ranker)
            return c.features[:, 3 * i].astype(np.float64) + 1e-3 * c.features[:, 3 * len(self.sources)]
        if self.combiner is None:
            return c.features[:, 1:3 * len(self.sources):3].sum(axis=1).astype(np.float64)
        return np.asarray(self.combiner.predict(c.features, num_threads=1), np.float64)

    def score(self, batch: QueryBatch) -> np.ndarray:
        if self.attrs is None:
            raise RuntimeError(f"{self.name} is not fitted")
        c = self.candidates(batch)
        out = np.broadcast_to(self.popularity[: self.n_items] - 1000.0, (len(batch), self.n_items)).copy()
        s = self.rank(c)
        inside = c.item < self.n_items
        out[c.query[inside], c.item[inside]] = s[inside]
        return out.astype(np.float32)

    # ---- serving helpers -----------------------------------------------------------------------------

    def precompute(self, data: TrainData, *, chunk: int = 256) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per known user, each user source's top `per_source` (items int32, scores float32) on their history."""
        seqs = data.sequences()
        out = {}
        for s in self.sources:
            if s.kind != "user":
                continue
            idx = np.zeros((data.n_users, self.config.per_source), np.int32)
            sc = np.zeros((data.n_users, self.config.per_source), np.float32)
            for a in range(0, data.n_users, chunk):
                u = np.arange(a, min(a + chunk, data.n_users))
                i, v = top_n(self.models[s.key].score(QueryBatch(u, [seqs[x] for x in u])), self.config.per_source)
                idx[u], sc[u] = i, v
            out[s.key] = (idx, sc)
        return out

    def ranked(self, data: TrainData, user_rows: dict[str, tuple[np.ndarray, np.ndarray]], *, n: int = 100,
               chunk: int = 512) -> dict[str, np.ndarray]:
        """Per known user, the pipeline's final top `n` on their history (history excluded), with each item's
        best source and anchor: what serving answers from when a shopper has done nothing since the bundle."""
        seqs = data.sequences()
        out = {"items": np.full((data.n_users, n), -1, np.int32), "scores": np.zeros((data.n_users, n), np.float32),
               "source": np.zeros((data.n_users, n), np.int8), "anchor": np.full((data.n_users, n), -1, np.int32)}
        for a in range(0, data.n_users, chunk):
            u = np.arange(a, min(a + chunk, data.n_users))
            rows = {k: (v[0][u], v[1][u]) for k, v in user_rows.items()}
            c = self.candidates(QueryBatch(u, [seqs[x] for x in u]), user_rows=rows)
            s = self.rank(c)
            o = np.lexsort((-s, c.query))
            q = c.query[o]
            pos = np.arange(len(o)) - np.searchsorted(q, q)
            ok = pos < n
            r, p, j = u[q[ok]], pos[ok], o[ok]
            out["items"][r, p], out["scores"][r, p] = c.item[j], s[j]
            out["source"][r, p], out["anchor"][r, p] = c.best_source[j], c.anchor[j]
        return out

    def with_items(self, attrs: ItemAttributes) -> Pipeline:
        """A shallow copy that knows `len(attrs) - n_items` more items (cold start: no events, no trend)."""
        extra = len(attrs) - self.n_items
        new = Pipeline.__new__(Pipeline)
        new.__dict__.update(self.__dict__)
        new.attrs = attrs
        new.popularity = np.concatenate([self.popularity[: self.n_items], np.zeros(extra, np.float32)])
        new.trend = np.concatenate([self.trend[: self.n_items], np.zeros(extra, np.float32)])
        return new

    # ---- persistence ---------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        if self.attrs is None:
            raise RuntimeError(f"{self.name} is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        a = self.attrs
        meta = {"model": self.name, "format": 1, "config": self.config.to_json(), "n_items": self.n_items,
                "sources": [asdict(s) for s in self.sources], "features": self.feature_names,
                "ranker": self.ranker, "selection": self.selection,
                "brand_names": a.brand_names, "leaf_names": a.leaf_names, "paths": [list(p) for p in a.paths]}
        (path / "pipeline.json").write_text(json.dumps(meta))
        for key, model in self.models.items():
            model.save(path / "sources" / key)
        arrays = {"popularity": self.popularity, "trend": self.trend, "top_trending": self.top_trending,
                  "brand": a.brand, "leaf": a.leaf, "price": a.price, "available": a.available}
        for key, (nb, ns) in self.tables.items():
            arrays[f"nb_{key}"], arrays[f"ns_{key}"] = nb, ns
        np.savez(path / "arrays.npz", **arrays)
        if self.combiner is not None:
            self.combiner.save_model(str(path / "combiner.txt"))

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        meta = json.loads((path / "pipeline.json").read_text())
        if meta.get("model") != cls.name:
            raise ValueError(f"{path}: not a pipeline")
        model = cls(PipelineConfig.from_json(meta["config"]))
        model.sources = tuple(Source(**s) for s in meta["sources"])
        model.n_items = int(meta["n_items"])
        model.ranker, model.selection = meta.get("ranker", "combiner"), meta.get("selection", {})
        model.models = {s.key: model_class(s.model).load(path / "sources" / s.key) for s in model.sources}
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
        model.popularity, model.trend, model.top_trending = arr["popularity"], arr["trend"], arr["top_trending"]
        model.tables = {s.key: (arr[f"nb_{s.key}"], arr[f"ns_{s.key}"]) for s in model.sources if s.kind == "i2i"}
        model.attrs = ItemAttributes(arr["brand"], arr["leaf"], arr["price"], arr["available"], meta["brand_names"],
                                     meta["leaf_names"], [tuple(p) for p in meta["paths"]])
        if (path / "combiner.txt").exists():
            import lightgbm as lgb

            model.combiner = lgb.Booster(model_file=str(path / "combiner.txt"))
        return model


def compare(data: Any, config: PipelineConfig | None = None, *, seed: int = 0, console: Any = None,
            name: str | None = None) -> Any:
    """The pipeline next to each of its sources alone, through the evaluation harness (full ranking,
    leave-one-out; the combiner learns on the validation targets, everything is scored on the test targets)."""
    import functools

    from aisle.evaluate.runner import run_experiment

    cfg = config or PipelineConfig()
    models: dict[str, Any] = {s.key: functools.partial(model_class(s.model), **s.params)
                              for s in available_sources(cfg.sources)}
    models["pipeline"] = functools.partial(Pipeline, cfg)
    return run_experiment(data, models, max_trials=1, seed=seed, console=console, name=name)


def _ndcg10(scores: np.ndarray, labels: np.ndarray, sizes: np.ndarray) -> float:
    """Mean NDCG@10 of one relevant item per group (the held-out target), ties broken pessimistically."""
    out = []
    start = 0
    for n in sizes:
        s, y = scores[start:start + n], labels[start:start + n]
        start += n
        t = s[y > 0]
        if len(t):
            rank = int((s >= t[0]).sum()) - 1
            out.append(1.0 / np.log2(rank + 2) if rank < 10 else 0.0)
    return float(np.mean(out)) if out else 0.0


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n columns per row (unordered is fine: the merge ranks them), -inf entries as index -1."""
    s = np.asarray(scores, np.float32)
    n = min(n, s.shape[1])
    idx = np.argpartition(-s, n - 1, axis=1)[:, :n]
    val = np.take_along_axis(s, idx, axis=1)
    return np.where(np.isfinite(val), idx, -1).astype(np.int32), np.nan_to_num(val, neginf=0.0).astype(np.float32)


def neighbour_table(model: Any, n_items: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_items, k) neighbour indices (-1 padded) and the model's own similarity scores (0 for padding)."""
    emb = getattr(model, "embeddings", None)
    if isinstance(emb, np.ndarray) and emb.ndim == 2:
        from aisle.search.dense import DenseIndex

        vec = np.ascontiguousarray(emb, np.float32)
        empty = np.linalg.norm(vec, axis=1) == 0
        idx, sc = DenseIndex(vec).search_batch(vec, k + 1)
        idx, sc = np.asarray(idx, np.int64), np.asarray(sc, np.float32)
        bad = (idx < 0) | (idx == np.arange(n_items)[:, None]) | empty[np.clip(idx, 0, None)] | empty[:, None]
        sc = np.where(bad, -np.inf, sc)
        o = np.argsort(-sc, axis=1, kind="stable")[:, :k]
        idx, sc = np.take_along_axis(idx, o, 1), np.take_along_axis(sc, o, 1)
    else:
        idx = np.full((n_items, k), -1, np.int64)
        sc = np.full((n_items, k), -np.inf, np.float32)
        for a in range(0, n_items, 4096):
            i, v = model.similar(np.arange(a, min(a + 4096, n_items)), k)
            idx[a:a + len(i)], sc[a:a + len(i)] = i, v
    ok = np.isfinite(sc) & (idx >= 0)
    sc = np.where(ok, np.maximum(sc, 0.0), 0.0)
    return np.where(ok, idx, -1).astype(np.int32), sc.astype(np.float32)


def hold_out_last(data: TrainData, min_events: int = 3) -> tuple[TrainData, np.ndarray, np.ndarray]:
    """`data` without each user's last positive event (users with >= min_events), and (users, held-out items)."""
    ev = data.events.with_row_index("_r")
    pos = ev.filter(pl.col("weight") > 0)
    stats = pos.group_by("user_idx", maintain_order=True).agg(pl.col("_r").last(), pl.col("item_idx").last(),
                                                              pl.len().alias("n"))
    stats = stats.filter(pl.col("n") >= min_events)
    inner = ev.filter(~pl.col("_r").is_in(stats["_r"].implode())).drop("_r")
    return (TrainData(users=data.users, items=data.items, events=inner, catalog=data.catalog),
            stats["user_idx"].to_numpy().astype(np.int64), stats["item_idx"].to_numpy().astype(np.int64))


__all__ = ["CONTENT_SOURCE", "DEFAULT_SOURCES", "Candidates", "Pipeline", "PipelineConfig", "Source", "compare",
           "hold_out_last", "item_attributes", "neighbour_table", "top_n"]
