"""Business rules: what a store may show, applied after the learned ranking and before explanations.

Why after ranking and over the candidates only: rules are the merchandiser's word (in stock only, never what
they just bought, a promoted item at slot 2, at most 3 of one brand, a mix of categories) and must hold whatever
the model thinks, but a request only ever shows a few hundred candidates, so every rule is a mask or a greedy
pass over those few hundred rows, never over the catalog.

Order: hard exclusions (seen/purchased, request exclusions, out of stock, request filters) -> boosts (additive,
in units of the request's score span, so a boost means the same whatever the model's scale) -> greedy selection
with `max_per_brand` and the category `diversity` penalty -> pins (placed at their position when they pass the
hard rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from aisle.config import RulesConfig
from aisle.query import Filters, fold


@dataclass
class ItemAttributes:
    """Per item index: what rules and features need (codes are -1 when unknown)."""

    brand: np.ndarray  # int32 codes into brand_names
    leaf: np.ndarray  # int32 codes into leaf_names (the last category of the path)
    price: np.ndarray  # float64, NaN unknown
    available: np.ndarray  # bool
    brand_names: list[str]
    leaf_names: list[str]
    paths: list[tuple[str, ...]]
    _category_masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.brand)

    def category_mask(self, name: str) -> np.ndarray:
        """Items with `name` at any level of their category path (compared under `fold`: case and accents), cached."""
        key = fold(name)
        mask = self._category_masks.get(key)
        if mask is None:
            mask = np.fromiter((any(fold(c) == key for c in p) for p in self.paths), bool, len(self.paths))
            self._category_masks[key] = mask
        return mask

    def inherit_masks(self, before: ItemAttributes, rows: list[int]) -> None:
        """Take `before`'s cached category masks, recomputed only at `rows` (a catalog upsert: no full rescan).
        Call on a new object before any request sees it."""
        n = len(self.paths)
        for key, mask in before._category_masks.items():
            out = np.zeros(n, bool)
            out[: len(mask)] = mask
            for row in rows:
                out[row] = any(fold(c) == key for c in self.paths[row])
            self._category_masks[key] = out

    def passes(self, rows: np.ndarray, f: Filters) -> np.ndarray:
        ok = np.ones(len(rows), bool)
        if f.categories:
            ok &= np.logical_or.reduce([self.category_mask(c)[rows] for c in f.categories])
        if f.brands:
            wanted = {fold(b) for b in f.brands}
            codes = np.array([i for i, b in enumerate(self.brand_names) if fold(b) in wanted], np.int32)
            ok &= np.isin(self.brand[rows], codes)
        if f.exclude_brands:
            unwanted = {fold(b) for b in f.exclude_brands}
            codes = np.array([i for i, b in enumerate(self.brand_names) if fold(b) in unwanted], np.int32)
            ok &= ~np.isin(self.brand[rows], codes)
        if f.available:
            ok &= self.available[rows]
        if f.price_min is not None:
            ok &= self.price[rows] >= f.price_min
        if f.price_max is not None:
            ok &= self.price[rows] <= f.price_max
        return ok


@dataclass(frozen=True)
class Selected:
    rows: np.ndarray
    scores: np.ndarray
    pinned: np.ndarray  # bool per row
    positions: np.ndarray  # where each row was in the candidates given (-1 for a pin), to read their other columns

    def inserted(self, at: int, row: int, score: float, pinned: bool, position: int, k: int) -> Selected:
        """This list with one entry put at `at` (the ones from there shift down one), cut to `k` entries."""
        return Selected(np.insert(self.rows, at, row)[:k], np.insert(self.scores, at, score)[:k],
                        np.insert(self.pinned, at, pinned)[:k], np.insert(self.positions, at, position)[:k])

    def moved(self, frm: int, to: int) -> Selected:
        """This list with its entry at `frm` moved up to `to` (the ones between shift down one); unchanged when it
        is there or higher already. The moved entry shows the score of the one it displaced, so the scores stay in
        order."""
        if frm <= to:
            return self
        rest = Selected(*(np.delete(a, frm) for a in (self.rows, self.scores, self.pinned, self.positions)))
        return rest.inserted(to, self.rows[frm], self.scores[to], self.pinned[frm], self.positions[frm], len(self.rows))


def _boosts(rows: np.ndarray, attrs: ItemAttributes, rules: RulesConfig, index: Mapping[str, int]) -> np.ndarray:
    b = np.zeros(len(rows))
    for item, w in rules.boost_items.items():
        i = index.get(item)
        if i is not None:
            b[rows == i] += w
    for table, codes, names in ((rules.boost_brands, attrs.brand, attrs.brand_names),
                                (rules.boost_categories, attrs.leaf, attrs.leaf_names)):
        if table:
            lower = {k.lower(): v for k, v in table.items()}
            per_code = np.array([lower.get(n.lower(), 0.0) for n in names] + [0.0])
            b += per_code[codes[rows]]  # code -1 reads the trailing 0
    return b


def allowed(rows: np.ndarray, *, attrs: ItemAttributes, rules: RulesConfig, excluded: np.ndarray,
            filters: Filters | None) -> np.ndarray:
    """The hard rules as a mask over `rows`: not excluded (`excluded` is a mask over the catalog: seen, asked not
    to show) and `admissible`. What every list, and every item an exploring list adds (`aisle.explore`), must
    pass."""
    return ~excluded[rows] & admissible(rows, attrs=attrs, rules=rules, filters=filters)


def admissible(rows: np.ndarray, *, attrs: ItemAttributes, rules: RulesConfig, filters: Filters | None
               ) -> np.ndarray:
    """The hard rules that do not depend on the shopper, as a mask over `rows`: in stock when the rules want it,
    passing the request's filters. Apart from `allowed` so that a fixed set of rows (exploration's pool) can
    keep the unfiltered mask and check a request's exclusions against its own rows, not a catalog-wide mask."""
    keep = attrs.available[rows] if rules.only_available else np.ones(len(rows), bool)
    if filters is not None and not filters.is_empty():
        keep &= attrs.passes(rows, filters)
    return keep


def apply_rules(rows: np.ndarray, scores: np.ndarray, k: int, *, attrs: ItemAttributes, rules: RulesConfig,
                index: Mapping[str, int], exclude: np.ndarray | Sequence[int] = (),
                filters: Filters | None = None) -> Selected:
    """The final `k` of ranked candidates `rows` (item indices, any order) under `rules` (see module docstring)."""
    rows = np.asarray(rows, np.int64)
    scores = np.asarray(scores, np.float64)
    excluded = np.zeros(len(attrs), bool)  # a mask over the catalog: cheaper than np.isin on every request
    excluded[np.asarray(exclude, np.int64)] = True
    keep = allowed(rows, attrs=attrs, rules=rules, excluded=excluded, filters=filters)
    positions = np.flatnonzero(keep)
    rows, scores = rows[keep], scores[keep]
    boosted = bool(rules.boost_items or rules.boost_brands or rules.boost_categories)
    span = 1.0  # the scores' spread: the unit of boosts and of the diversity penalty, only computed for them
    if (boosted or rules.diversity) and len(scores) > 1:
        span = float(scores.max() - scores.min()) or 1.0
    if boosted:
        scores = scores + span * _boosts(rows, attrs, rules, index)
    pins = [(index[p.item_id], p.position) for p in rules.pins if p.item_id in index]
    if pins:
        free = ~np.isin(rows, np.array([r for r, _ in pins], np.int64))
        rows, scores, positions = rows[free], scores[free], positions[free]
    picked = _greedy(rows, scores, k, attrs, rules, span)
    if not pins:  # the common case, as arrays without a round trip through Python tuples
        return Selected(rows[picked], scores[picked], np.zeros(len(picked), bool), positions[picked].astype(np.int64))
    chosen = [(int(r), float(v), False, int(p)) for r, v, p in zip(rows[picked], scores[picked], positions[picked],
                                                                    strict=True)]
    top = max((c[1] for c in chosen), default=0.0)
    for row, position in sorted(pins, key=lambda p: p[1]):
        ok = bool(allowed(np.array([row]), attrs=attrs, rules=rules, excluded=excluded, filters=filters)[0])
        if ok and position <= k:
            chosen.insert(min(position - 1, len(chosen)), (row, top, True, -1))
    chosen = chosen[:k]
    return Selected(np.array([c[0] for c in chosen], np.int64), np.array([c[1] for c in chosen], np.float64),
                    np.array([c[2] for c in chosen], bool), np.array([c[3] for c in chosen], np.int64))


def _greedy(rows: np.ndarray, scores: np.ndarray, k: int, attrs: ItemAttributes, rules: RulesConfig,
            span: float) -> np.ndarray:
    """Positions picked best-first, skipping brands at their cap and penalising repeated leaf categories."""
    order = np.argsort(-scores, kind="stable")
    if rules.max_per_brand is None and rules.diversity == 0.0:
        return order[:k]
    brands, leaves = attrs.brand[rows], attrs.leaf[rows]
    eff = scores.copy()
    alive = np.ones(len(rows), bool)
    brand_count: dict[int, int] = {}
    leaf_count: dict[int, int] = {}
    picked: list[int] = []
    while len(picked) < k and alive.any():
        cand = np.where(alive, eff, -np.inf)
        i = int(np.argmax(cand))
        alive[i] = False
        b = int(brands[i])
        if rules.max_per_brand is not None and b >= 0 and brand_count.get(b, 0) >= rules.max_per_brand:
            continue
        picked.append(i)
        brand_count[b] = brand_count.get(b, 0) + 1
        leaf = int(leaves[i])
        leaf_count[leaf] = leaf_count.get(leaf, 0) + 1
        if rules.diversity and leaf >= 0:
            eff[leaves == leaf] -= rules.diversity * span
    return np.asarray(picked, np.int64)


__all__ = ["ItemAttributes", "Selected", "admissible", "allowed", "apply_rules"]
