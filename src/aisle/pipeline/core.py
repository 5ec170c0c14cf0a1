"""The recommendation pipeline: candidate sources -> merge -> a named feature frame -> the combiner.

`fit` trains the combiner without leakage: each user's last event is held out, the sources are fitted on the
rest, the combiner learns to rank the held-out item among its candidates, and then the sources are refitted on
everything (under the evaluation harness that held-out event is exactly the validation target; the test target
is never seen). With `train_positions` = m > 1 each user's last m events are held out and each is a training
query on the history before it: a store with few users and long histories (ML-100K: 943 users, ~100 events each)
gives its combiner m times the queries, where one per user left it ~800 to learn from. Sources that read no events
(content) are fitted once, on everything; `fit_once` sources (a deep model within a nightly budget) once, on the
events without the held-out ones. A deep source that stops
early on a hold-out of its own (`holdout = true`: the last event of what it is fitted on) chooses its epochs in
the first fit; its refit trains that many epochs on everything, the hold-out put back
(`SequentialRecommender.refit_overrides`). `Pipeline` is itself a Recommender: `score` puts candidates above every
other item, which keeps popularity order.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.pipeline.combiner import Combiner
from aisle.pipeline.config import PipelineConfig
from aisle.pipeline.features import (
    Candidates,
    FeatureFrame,
    ItemFacts,
    Tags,
    feature_names,
    merge,
    rank_within,
)
from aisle.pipeline.impression_ranker import IMPRESSIONS, ImpressionRanker
from aisle.pipeline.sources import SOURCE_KINDS, CandidateSource, Describe, SourceBatch, TrendingSource, Window
from aisle.query import Query
from aisle.rules import ItemAttributes

FORMAT = 2
_CHUNK = 512


@dataclass(frozen=True)
class HeldOut:
    """`inner`: the events without each user's last `positions` positive ones (`hold_out_tail`); one combiner query
    per held-out event: user `users[i]`, target `targets[i]` (a user's queries next to each other, in time order),
    history the user's `inner` sequence followed by `before[i]`."""

    inner: TrainData
    users: np.ndarray
    targets: np.ndarray

    @functools.cached_property
    def before(self) -> list[np.ndarray]:
        """Per query, its user's held-out events before its target (the targets of the queries before it in that
        user's run; empty for the first)."""
        starts = np.flatnonzero(np.r_[True, self.users[1:] != self.users[:-1]]) if len(self.users) \
            else np.zeros(0, np.int64)
        run_start = np.repeat(starts, np.diff(np.r_[starts, len(self.users)]))
        return [self.targets[run_start[q]:q] for q in range(len(self.users))]

    @functools.cached_property
    def _sequences(self) -> list[np.ndarray]:
        return self.inner.sequences()

    def histories(self, queries: np.ndarray) -> list[np.ndarray]:
        """The time-ordered history of each query of `queries` (positions in `users`)."""
        sequences = self._sequences
        return [np.concatenate([sequences[self.users[q]], self.before[q]]) if len(self.before[q])
                else sequences[self.users[q]] for q in queries]


class TrainingFrame(NamedTuple):
    """What the combiner learns from: the candidates of the queries whose target is among them, one frame; a label
    per row (1: the target), rows per query (`sizes`), each query's user and each row's item."""

    frame: FeatureFrame
    labels: np.ndarray
    sizes: np.ndarray
    users: np.ndarray
    items: np.ndarray


class Pipeline:
    name: ClassVar[str] = "pipeline"
    search_space: ClassVar[dict[str, list[Any]]] = {}

    def __init__(self, config: PipelineConfig | dict[str, Any] | None = None, seed: int = 0, **overrides: Any
                 ) -> None:
        # a dict too: the evaluation harness passes the configuration as a (JSON) parameter, see `as_model`
        config = PipelineConfig.from_json(config) if isinstance(config, dict) else config or PipelineConfig()
        if seed or overrides:
            config = PipelineConfig.from_json({**config.to_json(), "seed": seed, **overrides})
        self.config = config
        self.sources: list[CandidateSource] = [SOURCE_KINDS[s.kind](s, config) for s in config.sources]
        self.combiner = Combiner.of_config(self.source_keys, config)
        self.impression_ranker: ImpressionRanker | None = None
        self.facts: ItemFacts | None = None
        self._tags: Tags | None = None  # read from the catalog at fit, when the "tags" feature group is on
        self.n_items = 0

    @property
    def source_keys(self) -> list[str]:
        return [s.key for s in self.sources]

    @property
    def per_user_keys(self) -> list[str]:
        """The sources whose per-user lists a bundle precomputes (full-catalog models)."""
        return [s.key for s in self.sources if s.per_user]

    @property
    def scorer_keys(self) -> list[str]:
        """The sources that score any (query, item), which the "full" feature group asks about every candidate."""
        return [s.key for s in self.sources if s.scores_items]

    def feature_names(self, groups: tuple[str, ...] | None = None) -> list[str]:
        """The combiner's columns with `groups` (default: the configuration's feature groups)."""
        return feature_names(self.source_keys, self.config.features if groups is None else groups, self.scorer_keys)

    def source(self, key: str) -> CandidateSource:
        for source in self.sources:
            if source.key == key:
                return source
        raise KeyError(f"no source {key!r}; this pipeline has {', '.join(self.source_keys)}")

    @property
    def popularity(self) -> np.ndarray:
        return self._facts.popularity

    @property
    def event_counts(self) -> np.ndarray:
        """Positive events per item index (0 for items added since the fit): what tells a cold item."""
        return self._facts.counts

    @property
    def trend(self) -> np.ndarray:
        return self._facts.trend

    @property
    def attrs(self) -> ItemAttributes:
        return self._facts.attrs

    @property
    def _facts(self) -> ItemFacts:
        if self.facts is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return self.facts

    # ---- fitting -------------------------------------------------------------------------------------

    def fit(self, data: TrainData, *, on_training_frame: Callable[[TrainingFrame], None] | None = None) -> Self:
        """Fit sources and combiner (see the module docstring); `on_training_frame` is handed the combiner's
        training frame (`benchmarks/pipeline_features.py` trains variants on it)."""
        self.n_items = data.n_items
        attrs = item_attributes(data.catalog, data.n_items)
        self._tags = item_tags(data.catalog, data.n_items) if "tags" in self.config.features else None
        for source in self.sources:
            if not source.spec.refit:
                source.fit(data, seed=self.config.seed)
        held = hold_out_tail(data, self.config.train_positions)
        self._fit_sources(held.inner, attrs)
        self._fit_combiner(held, on_training_frame)
        self._fit_sources(data, attrs, final=True)
        return self

    def _fit_sources(self, data: TrainData, attrs: ItemAttributes, *, final: bool = False) -> None:
        """Fit the sources that read events on `data`; the `final` fit leaves `fit_once` sources as they are."""
        for source in self.sources:
            if source.spec.refit and not (final and source.spec.fit_once):
                source.fit(data, seed=self.config.seed, refit=final)
        self.facts = self._item_facts(data, attrs)

    def _item_facts(self, data: TrainData, attrs: ItemAttributes) -> ItemFacts:
        """Popularity (log-scaled counts) and trend (the trending source's counts, else plain counts) in [0, 1]."""
        events = data.events.filter(pl.col("weight") > 0)
        counts = np.bincount(events["item_idx"].to_numpy(), minlength=data.n_items).astype(np.float64)
        trending = next((s for s in self.sources if isinstance(s, TrendingSource)), None)
        trend = trending.scores if trending is not None else (counts / max(counts.max(), 1e-12)).astype(np.float32)
        return ItemFacts.of_counts(counts, trend, attrs, self._tags)

    def _fit_combiner(self, held: HeldOut, on_training_frame: Callable[[TrainingFrame], None] | None) -> None:
        rng = np.random.default_rng(self.config.seed)
        training = self.training_frame(held, rng)
        if on_training_frame is not None:
            on_training_frame(training)
        self.combiner = Combiner.of_config(self.source_keys, self.config)
        if len(training.sizes):
            self.combiner.fit(training.frame, training.labels, training.sizes,
                              holdout_fraction=self.config.holdout_fraction, rng=rng, owners=training.users)

    def training_frame(self, held: HeldOut, rng: np.random.Generator) -> TrainingFrame:
        """What the combiner learns from, with the sources fitted on `held.inner`: the candidates of (at most
        `max_train_queries` of) the held-out queries on their histories, labelled 1 for their targets. Only queries
        whose target is among their candidates teach anything, so the others are left out."""
        queries = np.arange(len(held.users))
        if len(queries) > self.config.max_train_queries:
            queries = np.sort(rng.choice(len(queries), self.config.max_train_queries, replace=False))
        frames, labels, sizes, owners, items = [], [], [], [], []
        for start in range(0, len(queries), _CHUNK):
            chunk = queries[start:start + _CHUNK]
            users, targets = held.users[chunk], held.targets[chunk]
            cands = self.candidates(QueryBatch(users, held.histories(chunk)))
            hit = (cands.item == targets[cands.query]).astype(np.float32)
            found = np.bincount(cands.query, weights=hit, minlength=len(chunk)) > 0
            keep = found[cands.query]
            frames.append(cands.features.rows(keep).values)
            labels.append(hit[keep])
            items.append(cands.item[keep])
            sizes += np.bincount(cands.query, minlength=len(chunk))[found].tolist()
            owners.append(users[found])
        names = tuple(self.feature_names())

        def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        values = np.vstack(frames) if frames else np.zeros((0, len(names)), np.float32)
        return TrainingFrame(FeatureFrame(names, values), joined(labels, np.float32), np.asarray(sizes, np.int64),
                             joined(owners, np.int64), joined(items, np.int64))

    @property
    def ranker(self) -> str:
        if self.config.ranker == IMPRESSIONS and self.impression_ranker is not None:
            return IMPRESSIONS
        return self.combiner.ranker

    @property
    def selection(self) -> dict[str, float]:
        return self.combiner.selection

    # ---- answering -----------------------------------------------------------------------------------

    def candidates(self, batch: QueryBatch, *, precomputed: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                   exclude_history: bool = True, include: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> Candidates:
        """Merged, deduplicated candidates with their feature frame for every query of `batch`; `include`:
        (query, item) pairs kept as candidates whatever the sources say (see `merge`)."""
        facts = self._facts
        histories = [np.asarray(h, np.int64) for h in batch.histories]
        histories = [h[(h >= 0) & (h < len(facts))] for h in histories]
        window = Window.of(histories, self.config.window)
        source_batch = SourceBatch(np.asarray(batch.user_idx), histories, [h[h < self.n_items] for h in histories],
                                   window, precomputed or {})
        found = [s.candidates(source_batch) for s in self.sources]
        scorers = {s.key: functools.partial(s.score_items, source_batch) for s in self.sources if s.scores_items} \
            if "full" in self.config.features else None
        return merge(found, self.source_keys, facts, histories, window, exclude_history=exclude_history,
                     groups=self.config.features, include=include, scorers=scorers)

    def rank(self, candidates: Candidates) -> np.ndarray:
        """The ranking score per candidate: the ranker learned from impressions when the configuration chooses it
        (`ranker = "impressions"`) and one was trained (`aisle.implearn`), else the combiner."""
        if self.config.ranker == IMPRESSIONS and self.impression_ranker is not None:
            return self.impression_ranker.score(candidates.features)
        return self.combiner.score(candidates.features)

    def with_impression_ranker(self, ranker: ImpressionRanker | None) -> Pipeline:
        """A shallow copy holding `ranker` (None: without one); it ranks with it when the configuration says
        `ranker = "impressions"`."""
        out = Pipeline.__new__(Pipeline)
        out.__dict__.update(self.__dict__)
        out.impression_ranker = ranker
        return out

    def score(self, batch: QueryBatch) -> np.ndarray:
        cands = self.candidates(batch)
        out = np.broadcast_to(self.popularity[: self.n_items] - 1000.0, (len(batch), self.n_items)).copy()
        scores = self.rank(cands)
        inside = cands.item < self.n_items
        out[cands.query[inside], cands.item[inside]] = scores[inside]
        return out.astype(np.float32)

    def candidate_recall(self, batch: QueryBatch, targets: np.ndarray, depths: tuple[int, ...]
                         ) -> dict[str, np.ndarray]:
        """Per query of `batch`, the share of its `targets` ((queries, T), -1 padded) among the first d candidates
        of each source (by that source's own summed score) and of the merged list (by the combiner's score), for
        each d of `depths` ((queries, len(depths)) per key, NaN for a query without targets); "pool": the
        number of merged candidates per query. It tells whether a miss is the sources' (the target was never a
        candidate) or the combiner's (it was, ranked too low), which NDCG alone cannot."""
        cands = self.candidates(batch)
        n_queries, n_ext = len(batch), len(self._facts)
        keys = cands.query.astype(np.int64) * n_ext + cands.item
        order = np.argsort(keys)
        wanted = np.where(targets >= 0, np.arange(n_queries)[:, None] * n_ext + targets, -1)
        at = np.clip(np.searchsorted(keys[order], wanted), 0, max(len(keys) - 1, 0))
        found = (targets >= 0) & (keys[order][at] == wanted) if len(keys) else np.zeros(targets.shape, bool)
        row = order[at] if len(keys) else np.zeros(targets.shape, np.int64)
        valid = (targets >= 0).sum(axis=1)
        depth = np.asarray(depths)

        def share(rank: np.ndarray) -> np.ndarray:
            target_rank = np.where(found, rank[row], np.inf) if len(rank) else np.full(targets.shape, np.inf)
            hits = (target_rank[:, :, None] < depth).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return hits / valid[:, None]

        out = {"merged": share(rank_within(cands.query, self.rank(cands), np.ones(len(cands), bool)))}
        for key in self.source_keys:
            out[key] = share(rank_within(cands.query, cands.features.column(f"{key}_score"),
                                          cands.features.column(f"{key}_rr") > 0))
        out["pool"] = np.bincount(cands.query, minlength=n_queries).astype(np.float64)
        return out

    def explain(self, item: int, source: int, anchor: int, query: Query, names: Describe) -> dict[str, Any]:
        """Why `item` is shown: asked of the source that ranked it best (`source`: its position)."""
        return self.sources[source].explain(item, anchor, query, names)

    def neighbours(self, item: int, relations: tuple[str, ...]) -> dict[int, tuple[float, CandidateSource]]:
        """Items next to `item` in the sources whose model is named in `relations` (in that order of preference):
        {item: (summed weight / rank, the first source that proposed it)}."""
        merged: dict[int, tuple[float, CandidateSource]] = {}
        # the preferred relation's source first, so it is the one that explains an item several sources propose
        # (an item bought with this one and viewed with it is "often bought with" on the bought-together page)
        asked = sorted((s for s in self.sources if s.spec.model in relations),
                       key=lambda s: relations.index(s.spec.model))
        for source in asked:
            found = source.neighbours(item, self.config.neighbours)
            if found is None:
                continue
            weight = 1.0 / (1 + relations.index(source.spec.model))
            for rank, other in enumerate(found[0].tolist()):
                before = merged.get(other)
                merged[other] = (weight / (1 + rank), source) if before is None else (
                    before[0] + weight / (1 + rank), before[1])
        return merged

    def update(self, events: pl.DataFrame) -> list[str]:
        """Fold new events (TrainData's encoded columns: item_idx, timestamp, weight, ...) into every source that
        can refresh without a refit, in place (for the trainer, not a pipeline being served); the keys updated."""
        facts = self._facts
        # Items added to the catalog since the fit (rows from n_items up to len(facts), see `with_items`) are
        # counted by trending and popularity; the models behind the other sources know only the fitted items.
        fitted = events.filter(pl.col("item_idx") < self.n_items)
        changed = [s.key for s in self.sources if (s.update(events, len(facts)) if isinstance(s, TrendingSource)
                                                   else s.update(fitted, self.n_items))]
        trending = next((s for s in self.sources if isinstance(s, TrendingSource)), None)
        trend = facts.trend
        if trending is not None and trending.key in changed:
            trend = np.zeros(len(facts), np.float32)
            size = min(len(facts), len(trending.scores))
            trend[:size] = trending.scores[:size]
        fresh = events.filter((pl.col("weight") > 0) & pl.col("is_new")) if "is_new" in events.columns else \
            events.filter(pl.col("weight") > 0)
        counts = facts.counts + np.bincount(fresh["item_idx"].to_numpy(), minlength=len(facts))[: len(facts)]
        self.facts = ItemFacts.of_counts(counts, trend, facts.attrs, facts.tags)
        return changed

    # ---- serving helpers -----------------------------------------------------------------------------

    def precompute(self, data: TrainData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per known user, each user source's top `per_source` (items int32, scores float32) on their history."""
        out = {}
        for source in self.sources:
            lists = source.precompute(data)
            if lists is not None:
                out[source.key] = lists
        return out

    def ranked(self, data: TrainData, precomputed: dict[str, tuple[np.ndarray, np.ndarray]], *, n: int = 100
               ) -> dict[str, np.ndarray]:
        """Per known user, the pipeline's final top `n` on their history (history excluded), with each item's
        best source and anchor: what serving answers from when a shopper has done nothing since the bundle."""
        sequences = data.sequences()
        out = {"items": np.full((data.n_users, n), -1, np.int32), "scores": np.zeros((data.n_users, n), np.float32),
               "source": np.zeros((data.n_users, n), np.int8), "anchor": np.full((data.n_users, n), -1, np.int32)}
        for start in range(0, data.n_users, _CHUNK):
            users = np.arange(start, min(start + _CHUNK, data.n_users))
            rows = {k: (v[0][users], v[1][users]) for k, v in precomputed.items()}
            cands = self.candidates(QueryBatch(users, [sequences[u] for u in users]), precomputed=rows)
            scores = self.rank(cands)
            order = np.lexsort((-scores, cands.query))
            query = cands.query[order]
            position = np.arange(len(order)) - np.searchsorted(query, query)
            ok = position < n
            user, pos, row = users[query[ok]], position[ok], order[ok]
            out["items"][user, pos], out["scores"][user, pos] = cands.item[row], scores[row]
            out["source"][user, pos], out["anchor"][user, pos] = cands.best_source[row], cands.anchor[row]
        return out

    def with_items(self, attrs: ItemAttributes, new_rows: list[int] | None = None,
                   similarity: np.ndarray | None = None) -> Pipeline:
        """A shallow copy over a catalog of `len(attrs)` items: items added since the fit have no events (no
        popularity, no trend) and, given their `similarity` to every item, join the neighbour tables of the
        first content source (else the first item-to-item source) next to the items they resemble."""
        out = Pipeline.__new__(Pipeline)
        out.__dict__.update(self.__dict__)
        out.facts = self._facts.extended(attrs)
        if new_rows and similarity is not None:
            target = self.cold_start_source()
            if target is not None:
                placed = target.with_new_items(new_rows, similarity, self.n_items)
                out.sources = [placed if s is target else s for s in self.sources]
        return out

    def cold_start_source(self) -> CandidateSource | None:
        """The source that new catalog items are placed in: content first, else the first with neighbours."""
        from aisle.pipeline.sources import ContentSource, ItemToItemSource

        return next((s for s in self.sources if isinstance(s, ContentSource)),
                    next((s for s in self.sources if isinstance(s, ItemToItemSource)), None))

    def with_sources(self, sources: list[CandidateSource]) -> Pipeline:
        """A shallow copy answering from `sources` (same keys and order; e.g. optimised for serving)."""
        if [s.key for s in sources] != self.source_keys:
            raise ValueError("with_sources keeps the pipeline's sources and their order")
        out = Pipeline.__new__(Pipeline)
        out.__dict__.update(self.__dict__)
        out.sources = list(sources)
        return out

    # ---- persistence ---------------------------------------------------------------------------------

    def save(self, path: Path, *, linked: dict[str, Path] | None = None) -> None:
        """Write the pipeline; the sources in `linked` (key -> a saved copy of that very source) are hard-linked
        from their copy instead of written again (`Bundle.save(reuse=...)`)."""
        from aisle.bundle import link_tree

        facts = self._facts
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        attrs = facts.attrs
        write_config(path, self.name, {"format": FORMAT, "pipeline": self.config.to_json(), "n_items": self.n_items,
                                       "brand_names": attrs.brand_names, "leaf_names": attrs.leaf_names,
                                       "paths": [list(p) for p in attrs.paths]})
        for s in self.sources:
            if linked and s.key in linked:
                link_tree(linked[s.key], path / "sources" / s.key)
            else:
                s.save(path / "sources" / s.key)
        tags = {"tag_ptr": facts.tags.ptr, "tag_ids": facts.tags.ids} if facts.tags is not None else {}
        np.savez(path / "arrays.npz", popularity=facts.popularity, trend=facts.trend, counts=facts.counts,
                 brand=attrs.brand, leaf=attrs.leaf, price=attrs.price, available=attrs.available, **tags)
        self.combiner.save(path / "combiner")
        if self.impression_ranker is not None:
            self.impression_ranker.save(path / IMPRESSIONS)

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        if not (path / "model.json").exists():
            raise ValueError(f"{path}: a pipeline written by an older Aisle (format 1); train the bundle again")
        meta = read_config(path, cls.name)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: pipeline format {meta.get('format')} is not {FORMAT}; train the bundle again")
        model = cls(PipelineConfig.from_json(meta["pipeline"]))
        model.n_items = int(meta["n_items"])
        model.sources = [SOURCE_KINDS[s.kind].load(path / "sources" / s.key, s, model.config)
                         for s in model.config.sources]
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        attrs = ItemAttributes(arrays["brand"], arrays["leaf"], arrays["price"], arrays["available"],
                               meta["brand_names"], meta["leaf_names"], [tuple(p) for p in meta["paths"]])
        tags = Tags(arrays["tag_ptr"], arrays["tag_ids"]) if "tag_ptr" in arrays else None
        model.facts = ItemFacts(arrays["popularity"], arrays["trend"], attrs, arrays["counts"], tags)
        model.combiner = Combiner.load(path / "combiner")
        if (path / IMPRESSIONS).is_dir():
            model.impression_ranker = ImpressionRanker.load(path / IMPRESSIONS)
        return model


def as_model(config: PipelineConfig) -> type[Pipeline]:
    """The pipeline of `config` as a model of the evaluation harness (`run_experiment`): one fixed configuration,
    which the report lists as its parameters, so a result names the exact sources it measured."""
    return type("Pipeline", (Pipeline,), {"search_space": {"config": [config.to_json()]}, "__module__": __name__})


def item_attributes(catalog: pl.DataFrame | None, n_items: int) -> ItemAttributes:
    """Brand / leaf category codes, price and availability per item index of an aligned catalog."""
    if catalog is None or catalog.is_empty():
        none = np.full(n_items, -1, np.int32)
        return ItemAttributes(none, none.copy(), np.full(n_items, np.nan), np.ones(n_items, bool), [], [],
                              [()] * n_items)
    column = catalog.get_column
    brands = column("brand").to_list() if "brand" in catalog.columns else [None] * catalog.height
    paths = [tuple(p or ()) for p in column("categories").to_list()] if "categories" in catalog.columns \
        else [()] * catalog.height
    price = column("price").cast(pl.Float64).fill_null(np.nan).to_numpy() if "price" in catalog.columns \
        else np.full(catalog.height, np.nan)
    available = column("available").fill_null(True).to_numpy().astype(bool) if "available" in catalog.columns \
        else np.ones(catalog.height, bool)
    brand_names = sorted({b for b in brands if b})
    leaf_names = sorted({p[-1] for p in paths if p})
    brand_code, leaf_code = {b: i for i, b in enumerate(brand_names)}, {c: i for i, c in enumerate(leaf_names)}
    pad = n_items - catalog.height
    return ItemAttributes(
        brand=np.array([brand_code.get(b, -1) if b else -1 for b in brands] + [-1] * pad, np.int32),
        leaf=np.array([leaf_code[p[-1]] if p else -1 for p in paths] + [-1] * pad, np.int32),
        price=np.concatenate([np.asarray(price, np.float64), np.full(pad, np.nan)]),
        available=np.concatenate([available, np.ones(pad, bool)]),
        brand_names=brand_names, leaf_names=leaf_names, paths=paths + [()] * pad)


TAGS_KEY = "attribute_ids"
"""The catalog attribute holding an item's tags (a list of ids): the Amazon S3-Rec files' brand and category ids."""


def item_tags(catalog: pl.DataFrame | None, n_items: int) -> Tags:
    """Per item index of an aligned catalog, the integer ids of its `attributes["attribute_ids"]` (none when
    absent); the "tags" feature group compares them with the recent history's."""
    lists: list[list[int]] = [[] for _ in range(n_items)]
    if catalog is not None and "attributes" in catalog.columns:
        decoded = catalog["attributes"].str.json_path_match(f"$.{TAGS_KEY}").to_list()
        for row, text in enumerate(decoded[:n_items]):
            if text:
                try:
                    lists[row] = [int(t) for t in json.loads(text) if isinstance(t, int | str) and str(t).isdigit()]
                except (ValueError, TypeError):
                    continue  # not a list of ids: no tags for this item
    return Tags.of_lists(lists)


def extend_attributes(attrs: ItemAttributes, rows: list[int], items: pl.DataFrame) -> ItemAttributes:
    """`attrs` after catalog upserts: items `rows` (existing, or new ones appended in order) take the brand,
    category path, price and availability of the records `items` (aligned with `rows`). The arrays are copied
    (the old attributes stay valid for requests still using them); a brand or category never seen gets the next
    code, so every existing code keeps its meaning."""
    n = max(len(attrs), max(rows, default=-1) + 1)
    grow = n - len(attrs)
    brand = np.concatenate([attrs.brand, np.full(grow, -1, np.int32)])
    leaf = np.concatenate([attrs.leaf, np.full(grow, -1, np.int32)])
    price = np.concatenate([attrs.price, np.full(grow, np.nan)])
    available = np.concatenate([attrs.available, np.ones(grow, bool)])
    paths = [*attrs.paths, *[()] * grow]
    brand_names, leaf_names = list(attrs.brand_names), list(attrs.leaf_names)
    brand_code = {b: i for i, b in enumerate(brand_names)}
    leaf_code = {c: i for i, c in enumerate(leaf_names)}
    for row, rec in zip(rows, items.iter_rows(named=True), strict=True):
        b, path = rec.get("brand"), tuple(rec.get("categories") or ())
        if b and b not in brand_code:
            brand_code[b] = len(brand_names)
            brand_names.append(b)
        if path and path[-1] not in leaf_code:
            leaf_code[path[-1]] = len(leaf_names)
            leaf_names.append(path[-1])
        brand[row] = brand_code[b] if b else -1
        leaf[row] = leaf_code[path[-1]] if path else -1
        p = rec.get("price")
        price[row] = np.nan if p is None else float(p)
        available[row] = True if rec.get("available") is None else bool(rec["available"])
        paths[row] = path
    out = ItemAttributes(brand, leaf, price, available, brand_names, leaf_names, paths)
    out.inherit_masks(attrs, rows)
    return out


def hold_out_last(data: TrainData, min_events: int = 3) -> tuple[TrainData, np.ndarray, np.ndarray]:
    """`data` without each user's last positive event (users with >= min_events), and (users, held-out items)."""
    held = hold_out_tail(data, 1, min_events)
    return held.inner, held.users, held.targets


def hold_out_tail(data: TrainData, positions: int, min_events: int = 3) -> HeldOut:
    """`data` without each user's last `positions` positive events, as far as the user keeps `min_events` - 1 of
    them (a user with fewer than `min_events` keeps all); the queries in the order of the users' first positive
    event, each user's in time order (with one position: what the combiner always learned from)."""
    if positions < 1:
        raise ValueError(f"positions must be at least 1; got {positions}")
    events = data.events.with_row_index("_r")
    positive = events.filter(pl.col("weight") > 0).with_columns(
        pl.len().over("user_idx").cast(pl.Int64).alias("_n"), pl.int_range(pl.len()).over("user_idx").alias("_pos"),
        pl.col("_r").min().over("user_idx").alias("_first"))
    held = positive.filter(pl.col("_pos") >= pl.max_horizontal(pl.col("_n") - positions, pl.lit(min_events - 1))
                           ).sort("_first", "_pos")
    inner = events.filter(~pl.col("_r").is_in(held["_r"].implode())).drop("_r")
    return HeldOut(TrainData(users=data.users, items=data.items, events=inner, catalog=data.catalog),
                   held["user_idx"].to_numpy().astype(np.int64), held["item_idx"].to_numpy().astype(np.int64))


def compare(data: Any, config: PipelineConfig | None = None, *, seed: int = 0, console: Any = None,
            name: str | None = None) -> Any:
    """The pipeline next to each of its sources alone, through the evaluation harness (full ranking,
    leave-one-out; the combiner learns on the validation targets, everything is scored on the test targets)."""
    import functools

    from aisle.evaluate.runner import run_experiment
    from aisle.models.registry import MODELS

    config = config or PipelineConfig()
    models: dict[str, Any] = {s.key: functools.partial(MODELS[s.model], **s.params) for s in config.sources}
    models["pipeline"] = as_model(config)
    return run_experiment(data, models, max_trials=1, seed=seed, console=console, name=name)


__all__ = ["FORMAT", "HeldOut", "Pipeline", "TrainingFrame", "as_model", "compare", "extend_attributes",
           "hold_out_last", "hold_out_tail", "item_attributes", "item_tags"]
