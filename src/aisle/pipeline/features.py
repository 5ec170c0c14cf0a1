"""Merge every source's contributions into one candidate per (query, item), and describe each candidate by a
named feature frame: per source its summed score, reciprocal rank and the score owed to the last history item,
then what the item and the query's recent history say (popularity, trend, price, category and brand shares).

One pass over all sources' rows at once: a few vectorised operations whatever the number of sources, because
this runs inside every request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from aisle.pipeline.sources import Contributions, Window
from aisle.rules import ItemAttributes

PER_SOURCE = ("score", "rr", "last")
CONTEXT = ("popularity", "trending", "log_price", "leaf_share", "brand_share", "same_leaf_as_last", "price_ratio",
           "n_sources", "history_len")
#: Feature groups a configuration may add (`PipelineConfig.features`), each computed from what serving has at
#: hand (the request's history, the bundle's item facts), with the same meaning offline and online:
#: - tags: the share of the recent window's items carrying each of the candidate's tags (catalog attribute ids,
#:   e.g. the Amazon files' brand and category ids) and the share of its tags the last item has
#: Two more groups were measured and dropped (RESULTS.md, "Pipeline on the public benchmarks"): each source's
#: score over its best for the query, and the session's popularity.
#: - full: every source that can score any item (a user or sequential model: `CandidateSource.scores_items`) scores
#:   EVERY merged candidate, not only the top-N it proposed: `{key}_full`, the model's score, and `{key}_full_rr`,
#:   1 / (1 + its rank among the query's candidates by that score). Without it a strong model says nothing about
#:   the candidates other sources found, which is most of the pool; serving pays one query encoding and a dot
#:   product per candidate.
GROUPS: dict[str, tuple[str, ...]] = {
    "tags": ("tag_share", "tag_last"),
    "full": ("full", "full_rr"),  # per scoring source: {key}_full, {key}_full_rr
}
SOURCE_GROUPS = frozenset({"full"})
"""The groups whose columns repeat for each scoring source (named `{key}_{column}`) rather than once."""

#: (query, item) -> the source's score of each pair; what the "full" group asks of each scoring source
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def feature_names(source_keys: list[str], groups: tuple[str, ...] = (), scorer_keys: list[str] | None = None
                  ) -> list[str]:
    """The frame's columns in order; `scorer_keys`: the sources that score any item (the "full" group's)."""
    names = [*(f"{key}_{part}" for key in source_keys for part in PER_SOURCE), *CONTEXT]
    for group in groups:
        if group in SOURCE_GROUPS:
            names += [f"{key}_{part}" for key in scorer_keys or () for part in GROUPS[group]]
        else:
            names += GROUPS[group]
    return names


@dataclass(frozen=True)
class FeatureFrame:
    """Candidate rows x named float32 columns (the combiner's input)."""

    names: tuple[str, ...]
    values: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def columns(self, names: list[str]) -> np.ndarray:
        return self.values[:, [self.names.index(n) for n in names]]

    def rows(self, mask: np.ndarray) -> FeatureFrame:
        return FeatureFrame(self.names, self.values[mask])


@dataclass(frozen=True)
class ItemFacts:
    """Per item index, what candidate features read besides the sources: popularity and trend in [0, 1] and the
    catalog attributes (items added since the fit have no events: 0 popularity and trend)."""

    popularity: np.ndarray
    trend: np.ndarray
    attrs: ItemAttributes
    counts: np.ndarray  # positive events per item, what popularity is the log-scaled form of
    tags: Tags | None = None  # per item, its catalog tags (attribute ids), for the "tags" feature group

    @classmethod
    def of_counts(cls, counts: np.ndarray, trend: np.ndarray, attrs: ItemAttributes, tags: Tags | None = None
                  ) -> ItemFacts:
        counts = np.asarray(counts, np.float64)
        popularity = (np.log1p(counts) / max(float(np.log1p(counts).max(initial=0.0)), 1e-9)).astype(np.float32)
        return cls(popularity, np.asarray(trend, np.float32), attrs, counts, tags)

    def __len__(self) -> int:
        return len(self.popularity)

    def extended(self, attrs: ItemAttributes) -> ItemFacts:
        """The same facts over a catalog with `len(attrs) - len(self)` more items (new items have no tags: the
        catalog a bundle serves is refreshed without a refit, and tags are read at fit time)."""
        extra = max(0, len(attrs) - len(self))
        tags = None if self.tags is None else self.tags.padded(len(self) + extra)
        return ItemFacts(np.concatenate([self.popularity, np.zeros(extra, np.float32)]),
                         np.concatenate([self.trend, np.zeros(extra, np.float32)]), attrs,
                         np.concatenate([self.counts, np.zeros(extra)]), tags)


@dataclass(frozen=True)
class Tags:
    """Each item's tags as CSR arrays: item i has `ids[ptr[i]:ptr[i + 1]]` (int64 ids, any range)."""

    ptr: np.ndarray
    ids: np.ndarray

    @classmethod
    def of_lists(cls, lists: list[list[int]]) -> Tags:
        lengths = np.fromiter((len(x) for x in lists), np.int64, len(lists))
        flat = np.fromiter((int(t) for x in lists for t in x), np.int64, int(lengths.sum()))
        return cls(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), flat)

    def padded(self, n_items: int) -> Tags:
        extra = max(0, n_items + 1 - len(self.ptr))
        return Tags(np.concatenate([self.ptr, np.full(extra, self.ptr[-1], np.int64)]), self.ids)

    def pairs(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `items`, tag) for every tag of every item of `items` (items past the table have none).
        Per request this runs on a few hundred items, so it reads one padded row per item (a handful of numpy
        calls) rather than slicing the CSR arrays."""
        table = self.table
        rows = table[np.minimum(np.asarray(items, np.int64), len(table) - 1)]
        rows[np.asarray(items) >= len(table) - 1] = -1
        owner, column = np.nonzero(rows >= 0)
        return owner, rows[owner, column]

    @functools.cached_property
    def width(self) -> int:
        """One more than the largest tag id: (query, tag) pairs are numbered query * width + tag."""
        return int(self.ids.max(initial=-1)) + 1

    @functools.cached_property
    def table(self) -> np.ndarray:
        """(items + 1, most tags of an item) ids padded with -1; the last row is all -1 (items past the table)."""
        lengths = np.diff(self.ptr)
        width = max(int(lengths.max(initial=0)), 1)
        out = np.full((len(lengths) + 1, width), -1, np.int64)
        column = np.arange(len(self.ids)) - np.repeat(self.ptr[:-1], lengths)
        out[np.repeat(np.arange(len(lengths)), lengths), column] = self.ids
        return out


@dataclass(frozen=True)
class Candidates:
    """The candidates of a batch as flat rows sorted by query: which item, its features, and for explanations
    the source that ranks it best (its position in the pipeline's sources) and that source's anchor."""

    query: np.ndarray
    item: np.ndarray
    features: FeatureFrame
    best_source: np.ndarray
    anchor: np.ndarray

    def __len__(self) -> int:
        return len(self.item)


def merge(contributions: list[Contributions], source_keys: list[str], facts: ItemFacts, histories: list[np.ndarray],
          window: Window, *, exclude_history: bool, groups: tuple[str, ...] = (),
          include: tuple[np.ndarray, np.ndarray] | None = None, scorers: Mapping[str, PairScorer] | None = None
          ) -> Candidates:
    """One candidate per (query, item) with its feature row; `contributions[i]` comes from `source_keys[i]`;
    `groups`: the optional feature groups (GROUPS) after the base columns, in that order; `scorers`: per scoring
    source (in order), how it scores (query, item) pairs, for the "full" group. `include` (queries,
    items): pairs that are candidates even when no source proposes them (no source columns, the context ones all
    the same): the items a logged list showed, which a ranker learned from impressions must see as rows."""
    n_queries, n_sources, n_ext = len(histories), len(source_keys), len(facts)
    source = np.concatenate([np.full(len(c), i, np.int64) for i, c in enumerate(contributions)] or [np.zeros(0, int)])
    query, item, score, anchor, recent = (
        np.concatenate([getattr(c, f) for c in contributions]) if contributions else np.zeros(0)
        for f in ("query", "item", "score", "anchor", "from_last"))
    keys = query.astype(np.int64) * n_ext + item.astype(np.int64)
    if include is None:
        pairs, pair_of_row = np.unique(keys, return_inverse=True)
    else:
        pairs = np.unique(np.concatenate([keys, np.asarray(include[0], np.int64) * n_ext + include[1]]))
        pair_of_row = np.searchsorted(pairs, keys)
    n_pairs = len(pairs)
    cell = pair_of_row * n_sources + source  # one cell per (candidate, source)
    cell_score = np.bincount(cell, weights=score, minlength=n_pairs * n_sources)
    cell_recent = np.bincount(cell, weights=recent, minlength=n_pairs * n_sources)
    cell_anchor = _strongest_anchor(cell, score, anchor.astype(np.int64), n_pairs * n_sources)
    cell_rr = _reciprocal_ranks(cell, cell_score, pairs // n_ext, n_queries, n_sources)
    cell_score, cell_recent, cell_rr, cell_anchor = (a.reshape(n_pairs, n_sources)
                                                     for a in (cell_score, cell_recent, cell_rr, cell_anchor))
    cand_query, cand_item = pairs // n_ext, pairs % n_ext
    keep = np.ones(n_pairs, bool)
    lengths = np.fromiter((len(h) for h in histories), np.int64, n_queries)
    if exclude_history and lengths.sum():
        seen = np.concatenate([np.full(len(h), q) * n_ext + h for q, h in enumerate(histories)])
        keep = ~np.isin(pairs, seen)
    per_source = np.stack([cell_score, cell_rr, cell_recent], axis=2).reshape(n_pairs, len(PER_SOURCE) * n_sources)
    context = _context(cand_query, cand_item, facts, window, lengths, cell_rr)
    optional = []
    for group in groups:
        if group in SOURCE_GROUPS:
            optional += _full(cand_query, cand_item, keep, scorers or {})
        else:
            optional += _GROUP_COLUMNS[group](cand_query, cand_item, facts, window, n_queries)
    values = np.column_stack([per_source, *context, *optional]).astype(np.float32)
    best = np.argmax(cell_rr, axis=1) if n_sources else np.zeros(n_pairs, np.int64)
    best_anchor = cell_anchor[np.arange(n_pairs), best] if n_sources else np.full(n_pairs, -1)
    frame = FeatureFrame(tuple(feature_names(source_keys, groups, list(scorers or ()))), values[keep])
    return Candidates(cand_query[keep], cand_item[keep], frame, best[keep], best_anchor[keep])


def _strongest_anchor(cell: np.ndarray, score: np.ndarray, anchor: np.ndarray, n_cells: int) -> np.ndarray:
    """Per cell, the anchor of its largest contribution (-1 when the cell is empty or has no anchor)."""
    out = np.full(n_cells, -1, np.int64)
    order = np.lexsort((score, cell))  # per cell, its largest contribution last
    if len(order):
        ends = np.r_[cell[order][1:] != cell[order][:-1], True]
        out[cell[order][ends]] = anchor[order][ends]
    return out


def _reciprocal_ranks(cell: np.ndarray, cell_score: np.ndarray, pair_query: np.ndarray, n_queries: int,
                      n_sources: int) -> np.ndarray:
    """Per cell, 1 / (1 + the candidate's rank among its query's candidates in that source); 0 when absent."""
    present = np.bincount(cell, minlength=len(cell_score)) > 0
    cells = np.flatnonzero(present)
    cell_source, cell_query = cells % n_sources, pair_query[cells // n_sources]
    order = np.lexsort((-cell_score[cells], cell_query, cell_source))
    group = (cell_source * n_queries + cell_query)[order]
    first = np.searchsorted(group, group)
    out = np.zeros(len(cell_score))
    out[cells[order]] = 1.0 / (1.0 + np.arange(len(order)) - first)
    return out


def _share(window: Window, codes_window: np.ndarray, query: np.ndarray, codes_candidate: np.ndarray, width: int,
           window_lengths: np.ndarray) -> np.ndarray:
    """Per candidate, the share of its query's window whose code (leaf category, brand) equals the candidate's."""
    known = codes_window >= 0
    keys, counts = np.unique(window.query[known] * (width + 1) + codes_window[known], return_counts=True)
    wanted = query * (width + 1) + codes_candidate
    if not len(keys):
        return np.zeros(len(wanted))
    at = np.clip(np.searchsorted(keys, wanted), 0, len(keys) - 1)
    hit = (codes_candidate >= 0) & (keys[at] == wanted)
    return np.where(hit, counts[at], 0) / window_lengths[query]


def _context(query: np.ndarray, item: np.ndarray, facts: ItemFacts, window: Window, lengths: np.ndarray,
             rr: np.ndarray) -> list[np.ndarray]:
    """The CONTEXT columns, in that order."""
    attrs = facts.attrs
    n_queries = len(lengths)
    per_query = np.bincount(window.query, minlength=n_queries)
    window_lengths = np.maximum(per_query, 1)
    leaf, brand = attrs.leaf[item], attrs.brand[item]
    window_leaf, window_brand = attrs.leaf[window.items], attrs.brand[window.items]
    last_leaf = np.full(n_queries, -2, np.int64)
    has = per_query > 0
    last_leaf[has] = window_leaf[(np.cumsum(per_query) - 1)[has]]
    price = attrs.price[item]
    window_price = attrs.price[window.items]
    median = np.full(n_queries, np.nan)
    for q in np.flatnonzero(has):  # per query, a handful of prices
        values = window_price[window.query == q]
        values = values[np.isfinite(values)]
        median[q] = np.median(values) if len(values) else np.nan
    ratio = np.log(price / median[query])
    return [facts.popularity[item], facts.trend[item], np.nan_to_num(np.log1p(np.nan_to_num(price, nan=0.0))),
            _share(window, window_leaf, query, leaf, len(attrs.leaf_names), window_lengths),
            _share(window, window_brand, query, brand, len(attrs.brand_names), window_lengths),
            (leaf >= 0) & (leaf == last_leaf[query]), np.nan_to_num(ratio, nan=0.0, posinf=0.0, neginf=0.0),
            (rr > 0).sum(axis=1), np.log1p(lengths[query])]


def _tags(query: np.ndarray, item: np.ndarray, facts: ItemFacts, window: Window, n_queries: int
          ) -> list[np.ndarray]:
    """tag_share: mean over the candidate's tags of the share of window items carrying it; tag_last: the share of
    the candidate's tags that the query's last item carries."""
    if facts.tags is None or not len(facts.tags.ids) or not len(query):
        return [np.zeros(len(query)), np.zeros(len(query))]
    width = facts.tags.width
    owner, tag = facts.tags.pairs(window.items)
    window_keys = window.query[owner] * width + tag
    cand_owner, cand_tag = facts.tags.pairs(item)
    wanted = query[cand_owner] * width + cand_tag
    n_tags = np.maximum(np.bincount(cand_owner, minlength=len(query)), 1)
    window_len = np.maximum(np.bincount(window.query, minlength=n_queries), 1)
    dense = n_queries * width <= _DENSE_TAG_CELLS
    out = []
    for keys in (window_keys, window_keys[window.distance[owner] == 0]):
        if dense:  # a count per (query, tag) cell: one bincount and one lookup
            hit = np.bincount(keys, minlength=n_queries * width)[wanted]
        else:  # occurrences of a (query, tag) key = the width of its run in the sorted keys
            keys = np.sort(keys)
            hit = np.searchsorted(keys, wanted, "right") - np.searchsorted(keys, wanted, "left")
        out.append(np.bincount(cand_owner, weights=hit, minlength=len(query)) / n_tags)
    out[0] = out[0] / window_len[query]
    return out


def _full(query: np.ndarray, item: np.ndarray, keep: np.ndarray, scorers: Mapping[str, PairScorer]
          ) -> list[np.ndarray]:
    """The "full" group: per scorer, its score of every kept candidate and 1 / (1 + the candidate's rank among its
    query's kept candidates by that score). Rows that are dropped (history) are not scored: they cost a model
    pass and are never seen."""
    out = []
    for score_pairs in scorers.values():
        score = np.zeros(len(query))
        score[keep] = score_pairs(query[keep], item[keep])
        rank = rank_within(query, score, keep)
        out += [score, np.where(np.isfinite(rank), 1.0 / (1.0 + rank), 0.0)]
    return out


def rank_within(query: np.ndarray, score: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Per row, its 0-based position among its query's `member` rows by descending score (inf when not a member;
    ties keep row order, which is item order inside a query)."""
    rows = np.flatnonzero(member)
    order = rows[np.lexsort((-score[rows], query[rows]))]
    grouped = query[order]
    out = np.full(len(query), np.inf)
    out[order] = np.arange(len(order)) - np.searchsorted(grouped, grouped)
    return out


_DENSE_TAG_CELLS = 1 << 22  # (queries x tag ids) up to which _tags counts in a dense array (32 MiB of int64)
_GROUP_COLUMNS = {"tags": _tags}


__all__ = ["CONTEXT", "GROUPS", "PER_SOURCE", "SOURCE_GROUPS", "Candidates", "FeatureFrame", "ItemFacts", "PairScorer",
           "Tags", "feature_names", "merge", "rank_within"]
