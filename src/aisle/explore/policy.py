"""The exploring slot policy: on a share of lists, slots of the served list show cold items a bandit picks.

What a list becomes. The pipeline and rules give the greedy list g. With probability `share` (a coin per request)
the list explores: each exploration slot (a pinned position moves it to the next free one) shows a cold item, and
the greedy items fill the other positions in their order (the last ones drop off). The cold items are picked
among the **pool** (items with fewer than `cold_events` events in the bundle, not yet graduated), restricted by
the same hard rules as any item of the list (`aisle.rules.allowed`: not seen, not excluded, in stock, within the
request's filters), not already on the list, and of a brand that stays within `max_per_brand` whatever is picked.

Thompson sampling draws `draws` samples of every pool item's Beta posterior when the state loads; a list that
explores takes one draw, chosen uniformly, and fills its slots with that draw's best eligible items in order.
LinUCB fills them with the eligible items of highest upper confidence bound (deterministic).

Propensities are exact: the probability that the item shown at a position was put there, over the coin and the
draw: (1 - share) [the greedy list has it there] + share [the exploring list has it there], where an exploration
slot's probability is the share of draws that put the item in it (1 for LinUCB's pick). A position before the
first slot is 1 either way.

Cost. Everything that does not depend on the request is computed when the state loads (a new `Explorer` per
state or catalog change, built off the request path and swapped in): where each catalog row sits in the pool, the
pool's unfiltered rules mask and brands, LinUCB's item-side features and one matrix holding theta and a square
root of A^-1 (a request's bounds are one small matmul), and each Thompson draw's best items in order (a request
reads the first eligible ones of each draw's short list, and scans whole draws only when filters exclude a
draw's whole short list), the bounds of every shopper without a history, and per shape of list (its length, pins,
slots) the layout with its propensities. A request then does a few numpy operations over the pool of at most `pool`
items; at that size each operation's fixed overhead (~1 us) outweighs its work, so what is cut is their number
(benchmarks/RESULTS.md "Exploration's request path in fewer numpy calls").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from aisle.config import ExploreConfig, RulesConfig
from aisle.explore.features import Featurizer
from aisle.query import Filters
from aisle.rules import admissible

EXPLANATION = {"type": "exploration", "text": "New to our recommendations: we are trying it out"}


class Explored(NamedTuple):
    """One request's list (a named tuple: built on every request, and a frozen dataclass's construction cost
    more than the rest of a LinUCB pick's Python)."""

    rows: np.ndarray  # the list's item rows
    propensities: np.ndarray  # per position
    explored: np.ndarray  # bool per position: a cold item placed by exploration
    source: np.ndarray  # per position, the index into the greedy list of the item shown there (-1: explored)


_SHORTLIST = 16
"""Thompson sampling: how many of each draw's best pool items are kept in order when the state loads. A request
picks, per draw, the first eligible items of that short list; only when some draw has fewer eligible ones than
the list's slots (filters that exclude most of the pool) are whole draws scanned."""


def pool_rows(cfg: ExploreConfig, counts: np.ndarray, available: np.ndarray, shown: np.ndarray,
              tracked: np.ndarray | None = None) -> np.ndarray:
    """The cold items exploration may show: fewer than `cold_events` events (or `tracked`: exploring them already,
    whatever events they earned since), in stock, fewer than `graduate_impressions` impressions so far (`shown` per
    row); the least shown first (the newest rows among equals), at most `pool`."""
    n = len(available)
    c = np.zeros(n)
    c[: min(n, len(counts))] = counts[:n]
    cold = c < cfg.cold_events
    if tracked is not None and len(tracked):
        cold[tracked] = True
    rows = np.flatnonzero(cold & available & (shown < cfg.graduate_impressions))
    order = np.lexsort((-rows, shown[rows]))
    return rows[order[: cfg.pool]]


class Explorer:
    """One runtime's exploring policy: its pool, posterior draws (Thompson) or model (LinUCB), and the coin."""

    def __init__(self, cfg: ExploreConfig, rules: RulesConfig, featurizer: Featurizer, pool: np.ndarray,
                 item_ids: list[str], rng: np.random.Generator | None = None) -> None:
        self.cfg, self.rules, self.features = cfg, rules, featurizer
        self.pool = np.asarray(pool, np.int64)
        self.pool_ids = [item_ids[r] for r in self.pool.tolist()]
        self.rng = rng or np.random.default_rng()
        attrs = featurizer.attrs
        n = len(self.pool)
        # each catalog row's place in the pool, n (a spare slot past the pool) when not in it: a request clears
        # its exclusions from a copy of the pool's mask with two writes, whatever they hold
        self._at = np.full(len(attrs), n, np.int64)
        self._positions = np.arange(n)  # a pick's one-item slice of it is its position array, no new array
        self._at[self.pool] = self._positions
        self._stock = np.r_[admissible(self.pool, attrs=attrs, rules=rules, filters=None), False]
        self._brand = attrs.brand[self.pool]
        shown, rewards = featurizer.state.counts(self.pool_ids)
        self.rate = featurizer.rate(self.pool_ids)
        a0, b0 = cfg.prior_clicks, cfg.prior_misses
        if cfg.policy == "thompson":
            # fixed for this state (seeded by it): a list picks one uniformly, which is what makes its propensity
            # exact; a new state (every worker refresh) draws afresh
            draw_rng = np.random.default_rng([cfg.seed, featurizer.state.updates])
            self.draws = draw_rng.beta(rewards + a0, np.maximum(shown - rewards, 0.0) + b0,
                                       size=(cfg.draws, n)) if n else np.zeros((cfg.draws, 0))
            self._shortlist = np.argsort(-self.draws, axis=1, kind="stable")[:, :_SHORTLIST]
        else:
            a_inv = np.linalg.inv(featurizer.state.a)
            theta = a_inv @ featurizer.state.b
            # alpha^2 x A^-1 x = |x alpha L|^2 for L L' = A^-1 (symmetric, positive definite; clipped against
            # rounding): a request's means and widths come from one matmul, x [theta | alpha L]
            w, v = np.linalg.eigh((a_inv + a_inv.T) / 2)
            self._weights = np.column_stack([theta, cfg.alpha * v * np.sqrt(np.maximum(w, 0.0))])
            self._contexts = featurizer.items(self.pool, self.rate)  # the shopper's columns per request
            self._no_history = self._bounds_of(self._contexts.base.T)  # every shopper without one: the same bounds
            self._no_history.flags.writeable = False

    def eligible(self, greedy: np.ndarray, excluded: np.ndarray | Sequence[int], filters: Filters | None) -> np.ndarray:
        """Mask over the pool: what the hard rules let this request show (not on the list already)."""
        if filters is None or filters.is_empty():
            keep = self._stock.copy()
        else:
            keep = np.r_[admissible(self.pool, attrs=self.features.attrs, rules=self.rules, filters=filters), False]
        keep[self._at[greedy]] = False
        if len(excluded):
            keep[self._at[excluded]] = False
        return keep[:-1]

    def room(self, kept: np.ndarray, cand: np.ndarray) -> np.ndarray | None:
        """How many more items of each candidate's brand the list may take (`max_per_brand` minus those of the
        greedy items `kept` on the exploring list; a large number for an item without a brand); None when there
        is no cap."""
        cap = self.rules.max_per_brand
        if cap is None:
            return None
        brand = self.features.attrs.brand
        b = self._brand[cand]
        have = np.bincount(brand[kept][brand[kept] >= 0], minlength=len(self.features.attrs.brand_names) + 1)
        return np.where(b < 0, 1 << 30, cap - have[np.maximum(b, 0)])

    def capacity(self, room: np.ndarray | None, cand: np.ndarray) -> int:
        """The most cold items the brand caps let a list take: each brand contributes min(room, its candidates).
        Any pick uses one unit of it, so sequential picks never get stuck before this many."""
        if room is None:
            return len(cand)
        b = self._brand[cand]
        branded = b >= 0
        _codes, first, counts = np.unique(b[branded], return_index=True, return_counts=True)
        return int((~branded).sum() + np.minimum(counts, np.maximum(room[branded][first], 0)).sum())

    def choose(self, greedy: np.ndarray, pinned: Sequence[bool], k: int, *, excluded: np.ndarray | Sequence[int],
               filters: Filters | None, history: np.ndarray) -> Explored:
        """The list to show for the greedy list `greedy` (item rows, `pinned` marks promoted positions; distinct
        items, as the rules leave them)."""
        greedy = np.asarray(greedy, np.int64)
        keep = self.eligible(greedy, excluded, filters)
        m = min(len(self.cfg.slots), int(np.count_nonzero(keep)))
        pins = tuple(i for i, p in enumerate(pinned) if p)
        share = self.cfg.share
        room = cand = None
        while m:  # fewer slots keep more greedy items, which may leave less room under the brand caps
            layout = _layout(len(greedy), pins, self.cfg.slots[:m], k, share)
            if self.rules.max_per_brand is None:
                break
            cand = np.flatnonzero(keep) if cand is None else cand
            room = self.room(greedy[layout.kept], cand)
            if self.capacity(room, cand) >= m:
                break
            m -= 1
        if m == 0:
            return Explored(greedy, np.ones(len(greedy)), np.zeros(len(greedy), bool), np.arange(len(greedy)))
        if not self.rng.random() < share:  # the greedy list: where the exploring one has the same item, either way
            return Explored(greedy, layout.greedy_propensities, layout.none_explored, layout.greedy_source)
        picks, probs = self._pick(keep, cand, room, m, history)
        shown = greedy[layout.gather]
        shown[layout.slots] = self.pool[picks]
        if probs is None:  # each slot's pick is certain (LinUCB): the layout's propensities as they are
            return Explored(shown, layout.propensities, layout.explored, layout.source)
        props = layout.propensities.copy()
        props[layout.slots] = share * probs
        return Explored(shown, props, layout.explored, layout.source)

    def _pick(self, keep: np.ndarray, cand: np.ndarray | None, room: np.ndarray | None, m: int, history: np.ndarray
              ) -> tuple[np.ndarray | list[int], np.ndarray | None]:
        """(pool positions for the m slots in order, each one's probability of being put in its slot, None when
        every one is certain); `keep` masks the pool, `cand` lists its True positions (None: not listed yet),
        `room` is per candidate (None: no brand cap)."""
        if self.cfg.policy == "thompson":
            top = self._shortlisted(keep, m) if room is None else None
            if top is None:  # a brand cap, or filters that exclude some draw's whole short list
                cand = np.flatnonzero(keep) if cand is None else cand
                top = cand[_best(self.draws[:, cand], room, self._brand[cand], m)]
            row = int(self.rng.integers(len(top)))
            picks = top[row]
            return picks, np.add.reduce(top == picks[None, :], axis=0) / len(top)  # ndarray.mean: slower, same
        bound = self._bounds(history)
        if m == 1 and room is None:  # the default: the eligible item of highest bound, the first one among equals
            best = int(np.where(keep, bound, -np.inf).argmax())
            if keep[best]:  # (not when every eligible bound is -inf or below: the general way below)
                return self._positions[best:best + 1], None
        cand = np.flatnonzero(keep) if cand is None else cand
        return cand[_best(bound[None, cand], room, self._brand[cand], m)[0]], None

    def _bounds(self, history: np.ndarray) -> np.ndarray:
        """LinUCB's upper confidence bound of each pool item for a shopper with `history` (item rows)."""
        if not len(history):
            return self._no_history
        return self._bounds_of(self.features.for_shopper(history, self._contexts))

    def _bounds_of(self, x: np.ndarray) -> np.ndarray:
        """The bounds of the pool's contexts `x`."""
        z = x @ self._weights
        width = z[:, 1:]
        return z[:, 0] + np.sqrt(np.einsum("ij,ij->i", width, width))

    def _shortlisted(self, keep: np.ndarray, m: int) -> np.ndarray | None:
        """Per draw, the pool positions of its m best eligible items in order, read from the draws' short lists
        (what `_best` over whole draws gives without a brand cap); None when some draw's short list holds fewer
        than m eligible items."""
        short = self._shortlist
        ok = keep[short]
        rows = np.arange(len(short))
        if m == 1:
            first = ok.argmax(axis=1)
            if not ok[rows, first].all():
                return None
            return short[rows, first][:, None]
        seen = np.cumsum(ok, axis=1)
        if not (seen[:, -1] >= m).all():
            return None
        return np.stack([short[rows, (seen >= j + 1).argmax(axis=1)] for j in range(m)], axis=1)


def _best(scores: np.ndarray, room: np.ndarray | None, brand: np.ndarray, m: int) -> np.ndarray:
    """Per row of `scores` (rows x candidates), the m best candidates in order, taking no more of a brand than its
    `room` (None: no cap). Vectorised over the rows; without binding caps it is a plain top-m."""
    rows = np.arange(len(scores))
    if m == 1:  # one slot (the default): the best with room, per row
        return np.argmax(scores if room is None else np.where(room >= 1, scores, -np.inf), axis=1)[:, None]
    if room is None or (room >= m).all():
        if m < scores.shape[1]:
            top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
        else:
            top = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1)[:, :m]
    left = np.broadcast_to(room, scores.shape).astype(np.int64).copy()
    live = scores.astype(np.float64).copy()
    out = np.zeros((len(scores), m), np.int64)
    for j in range(m):
        pick = np.argmax(np.where(left > 0, live, -np.inf), axis=1)
        out[:, j] = pick
        live[rows, pick] = -np.inf
        left[:, :] -= (brand[None, :] == brand[pick][:, None]) & (brand[pick][:, None] >= 0)
    return out


@dataclass(frozen=True)
class _Layout:
    """Where an exploring list puts what, and the propensities that follow, for one shape of request and share
    (read-only arrays: shared by every request of that shape)."""

    source: np.ndarray  # per position, the index into the greedy list it shows (-1: an exploration slot)
    slots: np.ndarray  # the slot positions, in order
    gather: np.ndarray  # `source` with 0 at the slots: greedy[gather] is the list before its slots are filled
    kept: np.ndarray  # the greedy indices the exploring list keeps
    explored: np.ndarray  # per position: a slot
    propensities: np.ndarray  # the exploring list's, each slot's pick certain: 1 where the greedy list has the
    # same item there (greedy items are distinct), else `share`
    greedy_propensities: np.ndarray  # the greedy list's: (1 - share) + share [the exploring list has it there]
    greedy_source: np.ndarray  # the greedy list's `source`: 0..n-1
    none_explored: np.ndarray  # the greedy list's `explored`: all False


@lru_cache(maxsize=4_096)
def _layout(n: int, pinned: tuple[int, ...], slots: tuple[int, ...], k: int, share: float) -> _Layout:
    """The exploring list's layout for a greedy list of n items with pins at `pinned`: pins keep their positions;
    slots skip them; greedy items fill the rest in order. Cached: a handful of layouts serve every request."""
    length = min(k, n + len(slots))
    fixed = {p for p in pinned if p < length}
    at: list[int] = []
    for s in slots:
        p = min(s - 1, length - 1)
        while p in fixed or p in at:
            p += 1
        if p >= length:  # past the end: the last free position instead
            p = max(q for q in range(length) if q not in fixed and q not in at)
        at.append(p)
    source = np.full(length, -1, np.int64)
    for p in fixed:
        source[p] = p
    rest = iter([i for i in range(n) if i not in fixed])
    for p in range(length):
        if p not in fixed and p not in at:
            source[p] = next(rest)
    explored = source < 0
    same = source == np.arange(length)
    out = _Layout(source=source, slots=np.flatnonzero(explored), gather=np.maximum(source, 0),
                  kept=source[~explored], explored=explored, propensities=np.where(same, 1.0, share),
                  greedy_propensities=(1 - share) + share * same[:n], greedy_source=np.arange(n),
                  none_explored=np.zeros(n, bool))
    for array in vars(out).values():
        array.flags.writeable = False
    return out


__all__ = ["EXPLANATION", "Explored", "Explorer", "pool_rows"]
