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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from aisle.config import ExploreConfig, RulesConfig
from aisle.explore.features import Featurizer
from aisle.query import Filters
from aisle.rules import allowed

EXPLANATION = {"type": "exploration", "text": "New to our recommendations: we are trying it out"}


@dataclass(frozen=True)
class Explored:
    rows: np.ndarray  # the list's item rows
    propensities: np.ndarray  # per position
    explored: np.ndarray  # bool per position: a cold item placed by exploration


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
        shown, rewards = featurizer.state.counts(self.pool_ids)
        self.rate = featurizer.rate(self.pool_ids)
        a0, b0 = cfg.prior_clicks, cfg.prior_misses
        if cfg.policy == "thompson":
            # fixed for this state (seeded by it): a list picks one uniformly, which is what makes its propensity
            # exact; a new state (every worker refresh) draws afresh
            draw_rng = np.random.default_rng([cfg.seed, featurizer.state.updates])
            self.draws = draw_rng.beta(rewards + a0, np.maximum(shown - rewards, 0.0) + b0,
                                       size=(cfg.draws, len(self.pool))) if len(self.pool) else \
                np.zeros((cfg.draws, 0))
        else:
            self.a_inv = np.linalg.inv(featurizer.state.a)
            self.theta = self.a_inv @ featurizer.state.b
            self.items_x = featurizer.item_part(self.pool, self.rate)  # the shopper's columns per request

    def eligible(self, greedy: np.ndarray, excluded: list[int], filters: Filters | None) -> np.ndarray:
        """Mask over the pool: what the hard rules let this request show (not on the list already)."""
        if not len(self.pool):
            return np.zeros(0, bool)
        mask = np.zeros(len(self.features.attrs), bool)
        mask[np.asarray(excluded, np.int64)] = True
        mask[greedy] = True
        return allowed(self.pool, attrs=self.features.attrs, rules=self.rules, excluded=mask, filters=filters)

    def room(self, kept: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """How many more items of each candidate's brand the list may take (`max_per_brand` minus those of the
        greedy items `kept` on the exploring list); a large number when there is no cap or no brand."""
        cap = self.rules.max_per_brand
        brand = self.features.attrs.brand
        b = brand[self.pool[cand]]
        if cap is None:
            return np.full(len(cand), 1 << 30)
        have = np.bincount(brand[kept][brand[kept] >= 0], minlength=len(self.features.attrs.brand_names) + 1)
        return np.where(b < 0, 1 << 30, cap - have[np.maximum(b, 0)])

    def capacity(self, room: np.ndarray, cand: np.ndarray) -> int:
        """The most cold items the brand caps let a list take: each brand contributes min(room, its candidates).
        Any pick uses one unit of it, so sequential picks never get stuck before this many."""
        if self.rules.max_per_brand is None:
            return len(cand)
        b = self.features.attrs.brand[self.pool[cand]]
        branded = b >= 0
        _codes, first, counts = np.unique(b[branded], return_index=True, return_counts=True)
        return int((~branded).sum() + np.minimum(counts, np.maximum(room[branded][first], 0)).sum())

    def choose(self, greedy: np.ndarray, pinned: np.ndarray, k: int, *, excluded: list[int],
               filters: Filters | None, history: np.ndarray) -> Explored:
        """The list to show for the greedy list `greedy` (item rows, `pinned` marks promoted positions)."""
        greedy = np.asarray(greedy, np.int64)
        pinned = np.asarray(pinned, bool)
        cand = np.flatnonzero(self.eligible(greedy, excluded, filters))
        m = min(len(self.cfg.slots), len(cand))
        while m:  # fewer slots keep more greedy items, which may leave less room under the brand caps
            template, slots = _template(len(greedy), tuple(np.flatnonzero(pinned).tolist()),
                                        tuple(self.cfg.slots[:m]), k)
            room = self.room(greedy[template[template >= 0]], cand)
            if self.capacity(room, cand) >= m:
                break
            m -= 1
        if m == 0:
            return Explored(greedy, np.ones(len(greedy)), np.zeros(len(greedy), bool))
        share = self.cfg.share
        explore = bool(self.rng.random() < share)
        if not explore:
            same = template[: len(greedy)] == np.arange(len(greedy))  # the exploring list has g_p at p too
            return Explored(greedy, (1 - share) + share * same, np.zeros(len(greedy), bool))
        picks, probs = self._pick(cand, room, len(slots), history)
        shown = np.where(template >= 0, greedy[np.maximum(template, 0)], -1)
        shown[slots] = self.pool[picks]
        props = np.full(len(shown), share)
        props[slots] = share * probs
        same = np.zeros(len(shown), bool)
        head = min(len(shown), len(greedy))
        same[:head] = (template[:head] >= 0) & (greedy[:head] == shown[:head])
        props[same] = 1.0  # the same item there either way
        explored = np.zeros(len(shown), bool)
        explored[slots] = True
        return Explored(shown, props, explored)

    def _pick(self, cand: np.ndarray, room: np.ndarray, m: int, history: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """(pool positions for the m slots in order, each one's probability of being put in its slot)."""
        if self.cfg.policy == "thompson":
            top = _best(self.draws[:, cand], room, self.features.attrs.brand[self.pool[cand]], m)
            row = int(self.rng.integers(len(top)))
            picks = top[row]
            return cand[picks], (top == picks[None, :]).mean(axis=0)
        x = self.items_x[cand]
        self.features.shopper_part(history, self.pool[cand], x)
        bound = x @ self.theta + self.cfg.alpha * np.sqrt(np.maximum(((x @ self.a_inv) * x).sum(axis=1), 0.0))
        best = _best(bound[None, :], room, self.features.attrs.brand[self.pool[cand]], m)[0]
        return cand[best], np.ones(m)


def _best(scores: np.ndarray, room: np.ndarray, brand: np.ndarray, m: int) -> np.ndarray:
    """Per row of `scores` (rows x candidates), the m best candidates in order, taking no more of a brand than its
    `room`. Vectorised over the rows; without binding caps it is a plain top-m."""
    rows = np.arange(len(scores))
    if m == 1:  # one slot (the default): the best with room, per row
        return np.argmax(np.where(room >= 1, scores, -np.inf), axis=1)[:, None]
    if (room >= m).all():
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


@lru_cache(maxsize=4_096)
def _template(n: int, pinned: tuple[int, ...], slots: tuple[int, ...], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exploring list's layout: per position, the index into the greedy list it shows (-1: an exploration
    slot), and the slot positions. Pins (positions in the greedy list) keep their positions; slots skip them;
    greedy items fill the rest in order. Cached: a handful of layouts serve every request (do not modify them)."""
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
    template = np.full(length, -1, np.int64)
    for p in fixed:
        template[p] = p
    rest = iter([i for i in range(n) if i not in fixed])
    for p in range(length):
        if p not in fixed and p not in at:
            template[p] = next(rest)
    template.flags.writeable = False
    slots_at = np.asarray(sorted(at), np.int64)
    slots_at.flags.writeable = False
    return template, slots_at


__all__ = ["EXPLANATION", "Explored", "Explorer", "pool_rows"]
