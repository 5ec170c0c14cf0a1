"""Sessions, vectorized: every step of every session in a time window is one batch of numpy operations.

The span is cut into windows processed in time order. A window's sessions are fresh ones (users drawn by
activity, times by weekday, hour and growth) plus follow-ups that earlier windows scheduled (a complement
after a purchase, a return to an abandoned cart). Step k moves all sessions with more than k views at
once: pick the next leaf (stay, related, sibling, complement, taste, search), draw a few candidate items
by popularity and keep one by the shopper's fit (Gumbel-max), then maybe click and add to cart. Carts
become removals, purchases, ratings and follow-ups when the window's sessions end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aisle.data.synthetic.catalog import DAY, PATTERN_P, PATTERNS, Catalog, neighbours
from aisle.data.synthetic.users import Users
from aisle.data.synthetic.vocab import LEAVES

SEARCH, VIEW, CLICK, CART, REMOVE, PURCHASE, RATING = range(7)
TYPE_NAMES = ("search", "view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating")
# step modes
M_SEARCH, M_TASTE, M_COMP, M_SIB, M_RELATED, M_SAME, M_LEAF, M_ITEM = range(8)
FRESH, COMPLEMENT, RETURN = range(3)  # session kinds
_NEW_DIRECTION = np.array([False, True, True, True, False, False, True, True])  # by mode: drops the search filter
N_POP = 8  # candidates drawn by popularity per step
NEG = -1e9
HOUR_P = np.array([1.2, 0.8, 0.5, 0.4, 0.4, 0.6, 1.2, 2.2, 3.2, 3.8, 4.2, 4.6, 5.2, 5.0, 4.6, 4.4, 4.5, 4.8,
                   5.4, 6.2, 6.6, 6.0, 4.2, 2.4])
HOUR_P = HOUR_P / HOUR_P.sum()
_KEYS = "qwertyuiop asdfghjkl zxcvbnm"
_PAT_SLOT = np.array([p[1] for p in PATTERNS])
_PAT_BRAND, _PAT_CAP, _PAT_LINE = (np.array([p[k] for p in PATTERNS]) for k in (2, 3, 4))


@dataclass
class Knobs:
    """Behaviour rates, calibrated so the funnel lands at ~10% view->cart and ~40% cart->purchase."""

    cart_bias: float = -4.05
    checkout: tuple[float, float, float] = (0.42, 0.6, 0.72)  # by session kind: fresh, complement, return
    remove: float = 0.12
    rate: float = 0.3
    complement_followup: float = 0.5
    return_followup: float = 0.3
    typo: float = 0.1


@dataclass
class Log:
    """Event columns as numpy chunks; `queries` holds the text that search events point to."""

    sess: list[np.ndarray] = field(default_factory=list)
    user: list[np.ndarray] = field(default_factory=list)
    item: list[np.ndarray] = field(default_factory=list)
    etype: list[np.ndarray] = field(default_factory=list)
    t: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    qref: list[np.ndarray] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, sess: np.ndarray, user: np.ndarray, item: np.ndarray, etype: int, t: np.ndarray,
            value: np.ndarray | None = None, queries: list[str] | None = None) -> None:
        n = len(sess)
        if n == 0:
            return
        self.sess.append(sess.astype(np.int32))  # compact columns: 10M events must fit comfortably
        self.user.append(user.astype(np.int32))
        self.item.append(item.astype(np.int32))
        self.etype.append(np.full(n, etype, dtype=np.int8))
        self.t.append(t.astype(np.float64))
        self.value.append(np.full(n, np.nan, dtype=np.float32) if value is None else value.astype(np.float32))
        if queries is None:
            self.qref.append(np.full(n, -1, dtype=np.int32))
        else:
            self.qref.append(np.arange(len(self.queries), len(self.queries) + n, dtype=np.int32))
            self.queries.extend(queries)
        self.count += n

    def arrays(self) -> dict[str, np.ndarray]:
        """One array per column; the chunks are released as they are joined (peak memory)."""
        out = {}
        for c in ("sess", "user", "item", "etype", "t", "value", "qref"):
            out[c] = np.concatenate(getattr(self, c))
            setattr(self, c, [])
        return out


@dataclass
class Filter:
    """Per session, what its last query asked for (-1 / inf: no constraint); the views that follow satisfy it."""

    on: np.ndarray
    leaf: np.ndarray
    slot: np.ndarray  # attribute slot (feature, spec, color, gender) and its value code
    val: np.ndarray
    brand: np.ndarray
    line: np.ndarray
    cap: np.ndarray

    @classmethod
    def empty(cls, n: int) -> Filter:
        return cls(np.zeros(n, dtype=bool), *(np.full(n, -1) for _ in range(5)), np.full(n, np.inf))

    def matches(self, cat: Catalog, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """(len(rows), k): which candidates satisfy their session's filter (ignoring whether it is on)."""
        slot, val, brand, line = self.slot[rows], self.val[rows], self.brand[rows], self.line[rows]
        ok = (slot[:, None] < 0) | (cat.slots[cand, np.maximum(slot, 0)[:, None]] == val[:, None])
        ok &= (brand[:, None] < 0) | (cat.brand[cand] == brand[:, None])
        ok &= (line[:, None] < 0) | (cat.line[cand] == line[:, None])
        ok &= cat.price[cand] <= self.cap[rows][:, None]
        return ok


class Simulator:
    """Holds the catalog, the shoppers and the random state; `run` produces the whole event log."""

    def __init__(self, cat: Catalog, users: Users, rng: np.random.Generator, *, days: int, season: np.ndarray,
                 knobs: Knobs | None = None) -> None:
        self.cat, self.users, self.rng, self.days, self.season = cat, users, rng, days, season
        self.k = knobs or Knobs()
        self.span = days * DAY
        self.sibs, self.n_sibs, self.ccdf, self.comp = neighbours()
        self.has_comp = self.comp[:, 0] >= 0
        self.n_leaves = len(LEAVES)
        self.consumable = np.array([lf.consumable for lf in LEAVES])
        self.log = Log()
        self.next_sid = 0
        self.n_sessions = 0
        # follow-up sessions scheduled by earlier windows: user, time, first leaf, first item, kind
        self.pending = {k: np.empty(0, dtype=np.float64 if k == "t" else np.int64)
                        for k in ("user", "t", "leaf", "item", "kind")}

    # ---- sampling helpers ------------------------------------------------------------------------

    def _gumbel(self, shape: tuple[int, ...]) -> np.ndarray:
        return -np.log(-np.log(self.rng.random(shape) + 1e-300) + 1e-300)

    def taste_leaf(self, u: np.ndarray, t: np.ndarray) -> np.ndarray:
        """A leaf by the shopper's taste times the season on that day (the drift signal)."""
        day = np.clip((t // DAY).astype(np.int64), 0, self.days)
        w = self.users.taste[u] * self.season[:, day].T
        c = np.cumsum(w, axis=1)
        r = self.rng.random(len(u)) * c[:, -1]
        return np.minimum((c < r[:, None]).sum(axis=1), self.n_leaves - 1)

    def popular(self, leaf: np.ndarray, k: int) -> np.ndarray:
        """(n, k) items of each row's leaf, drawn by within-leaf Zipf popularity."""
        cat = self.cat
        idx = np.searchsorted(cat.gcdf, leaf[:, None] + self.rng.random((len(leaf), k)), side="right")
        return np.clip(idx, cat.leaf_start[leaf][:, None], cat.leaf_end[leaf][:, None] - 1)

    def fit(self, u: np.ndarray, cand: np.ndarray, anchor_z: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Log-weight of each candidate for its shopper now: brand, price near the session's anchor, gender,
        quality, a launch boost for new items, and -inf for items not yet launched or sold out."""
        cat, us = self.cat, self.users
        s = us.brand_aff[u[:, None], cat.brand[cand]]
        dz = cat.z[cand] - anchor_z[:, None]
        s = s - dz * dz / (2 * 0.7**2)
        g = cat.slots[cand, 3]
        ug = us.gender[u][:, None]
        s += np.where((g < 0) | (g == 2) | (ug == 2), 0.0, np.where(g == ug, 0.8, -1.6))
        s += 0.4 * cat.quality[cand]
        age = t[:, None] - cat.created[cand]
        s += np.where(age < 0, NEG, 0.9 * np.exp(-np.maximum(age, 0) / (30 * DAY)))
        s[cat.gone[cand] <= t[:, None]] = NEG
        return s

    def cart_logit(self, u: np.ndarray, item: np.ndarray) -> np.ndarray:
        """How much a shopper wants a viewed item: taste for its leaf, brand, price tier, gender, quality."""
        cat, us = self.cat, self.users
        leaf = cat.leaf[item]
        taste_rel = np.clip(np.log(us.taste[u, leaf] * self.n_leaves), -3, 2)
        dz = cat.z[item] - us.z[u]
        g = cat.slots[item, 3]
        ug = us.gender[u]
        gender = np.where((g < 0) | (g == 2) | (ug == 2), 0.0, np.where(g == ug, 0.3, -1.5))
        return 0.8 * taste_rel + us.brand_aff[u, cat.brand[item]] - dz * dz / (2 * 0.8**2) + gender \
            + 0.5 * cat.quality[item]

    def typo(self, q: str) -> str:
        """One slip in a word of four letters or more: a swap, a drop, a double or a neighbouring key."""
        words = q.split(" ")
        long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if not long:
            return q
        wi = long[int(self.rng.integers(len(long)))]
        w = words[wi]
        p = int(self.rng.integers(1, len(w) - 1))
        op = int(self.rng.integers(4))
        if op == 0:
            w = w[:p] + w[p + 1] + w[p] + w[p + 2:]
        elif op == 1:
            w = w[:p] + w[p + 1:]
        elif op == 2:
            w = w[:p] + w[p] + w[p:]
        else:
            k = _KEYS.find(w[p])
            near = [c for c in (_KEYS[k - 1] if k > 0 else " ", _KEYS[k + 1] if k + 1 < len(_KEYS) else " ")
                    if c != " "] if k >= 0 else []
            w = w[:p] + (near[int(self.rng.integers(len(near)))] if near else "") + w[p + 1:]
        words[wi] = w
        return " ".join(words)

    # ---- the window loop -------------------------------------------------------------------------

    def run(self, target: int, progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
        """Simulate until about `target` events fall inside the span (a little over: the caller trims)."""
        days = self.days
        est_per_session = 7.5
        n_windows = int(np.clip(round(target / est_per_session / 600), 4, days))
        edges = np.unique(np.round(np.linspace(0, days, n_windows + 1)).astype(np.int64))
        day_w = np.array([1.15 if d % 7 in (5, 6) else 1.0 for d in range(days)]) * (1 + 0.25 * np.arange(days) / days)
        goal = int(target * 1.01) + 20
        for w in range(len(edges) - 1):
            lo, hi = int(edges[w]), int(edges[w + 1])
            per = self.log.count / self.n_sessions if self.n_sessions > 100 else est_per_session
            share = day_w[lo:hi].sum() / day_w[lo:].sum()
            fresh = round(max(0, goal - self.log.count) * share / per)
            self.window(lo, hi, fresh, day_w[lo:hi])
            if progress is not None:
                progress(min(self.log.count, target), target)
        lo = int(edges[-2])
        while (inside := self.count_inside()) < goal:  # rarely: top up the last window
            per = self.log.count / max(self.n_sessions, 1)
            self.window(lo, days, int((goal - inside) / per * 1.1) + 5, day_w[lo:days])
        if progress is not None:
            progress(target, target)
        return self.log.arrays()

    def count_inside(self) -> int:
        return sum(int((t < self.span).sum()) for t in self.log.t)

    def window(self, lo: int, hi: int, n_fresh: int, day_w: np.ndarray) -> None:
        rng, us = self.rng, self.users
        t_lo, t_hi = lo * DAY, hi * DAY
        # fresh sessions: a weekday/growth-weighted day, an hour of the daily curve, users who have joined
        day = lo + rng.choice(hi - lo, size=n_fresh, p=day_w / day_w.sum())
        t0 = day * DAY + rng.choice(24, size=n_fresh, p=HOUR_P) * 3600.0 + rng.random(n_fresh) * 3600.0
        # seasons move people too: an outdoors fan shops less in January, not just less outdoors
        w = np.where(us.join <= t_lo, us.activity * (us.taste @ self.season[:, (lo + hi) // 2]), 0.0)
        if w.sum() == 0:
            w = us.activity.copy()
        user = np.minimum(np.searchsorted(np.cumsum(w), rng.random(n_fresh) * w.sum(), side="right"), len(w) - 1)
        p = self.pending
        due = p["t"] < t_hi
        user = np.concatenate([user, p["user"][due]])
        t0 = np.concatenate([t0, p["t"][due]])
        first_leaf = np.concatenate([np.full(n_fresh, -1), p["leaf"][due]])
        first_item = np.concatenate([np.full(n_fresh, -1), p["item"][due]])
        kind = np.concatenate([np.full(n_fresh, FRESH), p["kind"][due]])
        self.pending = {k: v[~due] for k, v in p.items()}
        order = np.argsort(t0, kind="stable")
        user, t0, first_leaf, first_item, kind = user[order], t0[order], first_leaf[order], first_item[order], \
            kind[order]
        n = len(user)
        if n == 0:
            return
        sid = self.next_sid + np.arange(n)
        self.next_sid += n
        self.n_sessions += n
        length = np.clip(np.round(np.exp(rng.normal(1.25, 0.75, n))), 1, 40).astype(np.int64)
        self.sessions(sid, user, t0, first_leaf, first_item, kind, length)

    def sessions(self, sid: np.ndarray, user: np.ndarray, t0: np.ndarray, first_leaf: np.ndarray,
                 first_item: np.ndarray, kind: np.ndarray, length: np.ndarray) -> None:
        rng, cat, us, kn, log = self.rng, self.cat, self.users, self.k, self.log
        n = len(sid)
        t = t0.copy()
        cur = np.full(n, -1)
        leaf = np.full(n, -1)
        anchor_z = us.z[user] + rng.normal(0, 0.3, n)
        carted_prev = np.zeros(n, dtype=bool)
        boost_leaf = np.where(kind == COMPLEMENT, first_leaf, -1)
        flt = Filter.empty(n)
        carts: list[tuple[np.ndarray, ...]] = []
        for step in range(int(length.max())):
            a = np.flatnonzero(length > step)
            m = len(a)
            u = user[a]
            r = rng.random(m)
            if step == 0:
                mode = np.where(first_item[a] >= 0, M_ITEM, np.where(first_leaf[a] >= 0, M_LEAF,
                                np.where(r < us.search_p[u], M_SEARCH, M_TASTE)))
            else:
                p_search = 0.04 * us.search_p[u] / 0.3
                p_comp = np.where(carted_prev[a] & self.has_comp[leaf[a]], 0.35, 0.05)
                edges = np.cumsum(np.stack([p_search, np.full(m, 0.1), p_comp, np.full(m, 0.08),
                                            np.full(m, 0.3)]), axis=0)
                mode = (r[None, :] >= edges).sum(axis=0)  # 0..5 = SEARCH, TASTE, COMP, SIB, RELATED, SAME
                mode = np.where((mode == M_COMP) & ~self.has_comp[leaf[a]], M_TASTE, mode)
            tt = t[a] + (0.0 if step == 0 else 3.0 + rng.lognormal(np.log(35.0), 0.8, m))
            new_leaf = leaf[a].copy()
            sel = (mode == M_SEARCH) | (mode == M_TASTE)
            new_leaf[sel] = self.taste_leaf(u[sel], tt[sel])
            sel = mode == M_COMP
            if sel.any():
                cl = leaf[a][sel]
                j = (self.ccdf[cl] < rng.random(int(sel.sum()))[:, None]).sum(axis=1)
                new_leaf[sel] = self.comp[cl, np.minimum(j, self.comp.shape[1] - 1)]
            sel = mode == M_SIB
            if sel.any():
                sl = leaf[a][sel]
                new_leaf[sel] = self.sibs[sl, (rng.random(int(sel.sum())) * self.n_sibs[sl]).astype(np.int64)]
            sel = mode == M_LEAF
            new_leaf[sel] = first_leaf[a][sel]
            sel = mode == M_ITEM
            new_leaf[sel] = cat.leaf[first_item[a][sel]]

            # a new direction drops the search filter; staying in the results keeps it
            drop = _NEW_DIRECTION[mode]
            flt.on[a[drop]] = False
            anchor = np.where((mode == M_RELATED) | (mode == M_SAME), cur[a], -1)
            anchor = np.where(mode == M_ITEM, first_item[a], anchor)
            s_rows = np.flatnonzero(mode == M_SEARCH)
            if len(s_rows):
                target = self.search(flt, a[s_rows], u[s_rows], new_leaf[s_rows], anchor_z[a[s_rows]], tt[s_rows],
                                     sid[a[s_rows]])
                anchor[s_rows] = target
                tt[s_rows] += rng.uniform(4, 15, len(s_rows))

            # candidates: popular items of the leaf, the anchor and three of its related items, the leaf's staple
            cand = np.empty((m, N_POP + 5), dtype=np.int64)
            cand[:, :N_POP] = self.popular(new_leaf, N_POP)
            use = (anchor >= 0) & (cat.leaf[np.maximum(anchor, 0)] == new_leaf)
            rel = cat.related[np.maximum(anchor, 0)[:, None], rng.integers(0, cat.related.shape[1], (m, 3))]
            filler = self.popular(new_leaf, 4)
            cand[:, N_POP] = np.where(use, anchor, filler[:, 0])
            cand[:, N_POP + 1:N_POP + 4] = np.where(use[:, None], rel, filler[:, 1:])
            cand[:, N_POP + 4] = cat.staple[new_leaf]
            score = self.fit(u, cand, anchor_z[a], tt)
            is_rel = (mode == M_RELATED) & use
            score[:, N_POP] += np.where(use, np.where(mode == M_SEARCH, 1.0, -2.0), 0.0)
            score[:, N_POP + 1:N_POP + 4] += np.where(is_rel, 2.5, np.where(use & (mode == M_SAME), 0.5, 0.0))[:, None]
            score[:, N_POP + 4] -= 1.5
            on = flt.on[a] & (flt.leaf[a] == new_leaf)
            match = flt.matches(cat, a, cand)
            score += np.where(on[:, None] & match, 3.5, 0.0)
            pick = np.argmax(score + self._gumbel(score.shape), axis=1)
            item = cand[np.arange(m), pick]
            forced = (mode == M_ITEM) & (score[:, N_POP] > NEG / 2)
            item[forced] = first_item[a][forced]

            # click on a listing tile (search results, "related" carousels) just before the product view
            from_list = on | (mode == M_SEARCH)
            click = rng.random(m) < np.where(from_list, 0.7, np.where(mode == M_RELATED, 0.3, 0.06))
            log.add(sid[a][click], u[click], item[click], CLICK, tt[click] - rng.uniform(0.5, 2.0, int(click.sum())))
            log.add(sid[a], u, item, VIEW, tt)

            logit = kn.cart_bias + self.cart_logit(u, item)
            logit += np.where(on & np.take_along_axis(match, pick[:, None], axis=1)[:, 0], 0.3, 0.0)
            # needs beat tastes: the complement a purchase calls for, the cart a shopper came back for
            logit += np.where(forced, 2.5, 0.0) + np.where(cat.leaf[item] == boost_leaf[a], 2.5, 0.0) \
                + np.where(mode == M_COMP, 1.5, 0.0)
            carted = rng.random(m) < 1.0 / (1.0 + np.exp(-logit))
            t_cart = tt + rng.uniform(5, 40, m)
            if carted.any():
                carts.append((a[carted], item[carted], t_cart[carted]))
            anchor_z[a] = 0.6 * anchor_z[a] + 0.4 * cat.z[item]
            cur[a], leaf[a], carted_prev[a] = item, new_leaf, carted
            t[a] = np.where(carted, t_cart, tt)
        t_end = t + rng.uniform(10, 60, n)
        self.checkout(carts, sid, user, kind, t0, t_end)

    def search(self, flt: Filter, rows: np.ndarray, u: np.ndarray, leaf: np.ndarray, anchor_z: np.ndarray,
               t: np.ndarray, sid: np.ndarray) -> np.ndarray:
        """Pick the item the shopper has in mind, phrase a query for it, log the search and set the filter
        that the following views satisfy. Returns the target items."""
        rng, cat = self.rng, self.cat
        cand = np.concatenate([self.popular(leaf, N_POP), cat.staple[leaf][:, None]], axis=1)
        score = self.fit(u, cand, anchor_z, t)
        score[:, -1] -= 1.5
        target = cand[np.arange(len(u)), np.argmax(score + self._gumbel(score.shape), axis=1)]
        pat = rng.choice(len(PATTERNS), size=len(u), p=PATTERN_P)
        pat = np.where(cat.valid_pattern[target, pat], pat, 0)
        texts = cat.queries[target, pat].tolist()
        for i in np.flatnonzero(rng.random(len(u)) < self.k.typo):
            texts[i] = self.typo(texts[i])
        self.log.add(sid, u, np.full(len(u), -1), SEARCH, t, queries=texts)
        slot = _PAT_SLOT[pat]
        flt.on[rows] = True
        flt.leaf[rows] = leaf
        flt.slot[rows] = slot
        flt.val[rows] = np.where(slot >= 0, cat.slots[target, np.maximum(slot, 0)], -1)
        flt.brand[rows] = np.where(_PAT_BRAND[pat], cat.brand[target], -1)
        flt.cap[rows] = np.where(_PAT_CAP[pat], cat.cap[target].astype(np.float64), np.inf)
        flt.line[rows] = np.where(_PAT_LINE[pat], cat.line[target], -1)
        return target

    def checkout(self, carts: list[tuple[np.ndarray, ...]], sid: np.ndarray, user: np.ndarray, kind: np.ndarray,
                 t0: np.ndarray, t_end: np.ndarray) -> None:
        """Turn the window's carts into cart/remove/purchase/rating events and schedule follow-up sessions."""
        rng, cat, kn, log = self.rng, self.cat, self.k, self.log
        if not carts:
            return
        row = np.concatenate([c[0] for c in carts])
        item = np.concatenate([c[1] for c in carts])
        tc = np.concatenate([c[2] for c in carts])
        _, first = np.unique(row * cat.n + item, return_index=True)  # one cart line per item and session
        first.sort()
        row, item, tc = row[first], item[first], tc[first]
        k = len(row)
        cons = self.consumable[cat.leaf[item]]
        qty = np.where(cons, rng.choice([1, 2, 3], size=k, p=[0.7, 0.2, 0.1]),
                       rng.choice([1, 2], size=k, p=[0.95, 0.05])).astype(np.float64)
        u = user[row]
        log.add(sid[row], u, item, CART, tc, qty)
        removed = rng.random(k) < kn.remove
        t_rm = tc + rng.uniform(0.2, 0.95, k) * (t_end[row] - tc) + 1.0
        log.add(sid[row][removed], u[removed], item[removed], REMOVE, t_rm[removed], qty[removed])
        checks = rng.random(len(sid)) < np.array(kn.checkout)[kind]
        bought = ~removed & checks[row]
        tp = t_end[row] + 20.0 + (tc - t0[row]) * 0.01
        log.add(sid[row][bought], u[bought], item[bought], PURCHASE, tp[bought], qty[bought])

        # ratings: later, in their own visit, better when the item fits the shopper's taste
        pb, ub, tpb = item[bought], u[bought], tp[bought]
        rate = rng.random(len(pb)) < kn.rate
        tr = tpb + rng.lognormal(np.log(6 * DAY), 0.6, len(pb))
        rate &= tr < self.span
        if rate.any():
            fitv = self.cart_logit(ub[rate], pb[rate])
            value = np.clip(np.round(3.1 + 0.35 * fitv + 0.6 * cat.quality[pb[rate]] + rng.normal(0, 0.8, len(fitv))),
                            1, 5)
            rs = self.next_sid + np.arange(len(fitv))
            self.next_sid += len(fitv)
            log.add(rs, ub[rate], pb[rate], RATING, tr[rate], value)

        # follow-ups: a complement after a purchase, a return to an abandoned cart
        comp = self.has_comp[cat.leaf[pb]] & (rng.random(len(pb)) < kn.complement_followup)
        cl = cat.leaf[pb[comp]]
        j = (self.ccdf[cl] < rng.random(len(cl))[:, None]).sum(axis=1)
        tf = tpb[comp] + rng.lognormal(np.log(3 * DAY), 0.9, len(cl))
        self._schedule(ub[comp], tf, self.comp[cl, np.minimum(j, self.comp.shape[1] - 1)], np.full(len(cl), -1),
                       COMPLEMENT)
        abandoned = ~removed & ~checks[row] & (rng.random(k) < kn.return_followup)
        tr2 = t_end[row][abandoned] + rng.lognormal(np.log(1.5 * DAY), 0.8, int(abandoned.sum()))
        self._schedule(u[abandoned], tr2, np.full(len(tr2), -1), item[abandoned], RETURN)

    def _schedule(self, user: np.ndarray, t: np.ndarray, leaf: np.ndarray, item: np.ndarray, kind: int) -> None:
        keep = t < self.span - 600
        new = {"user": user[keep], "t": t[keep], "leaf": leaf[keep], "item": item[keep],
               "kind": np.full(int(keep.sum()), kind)}
        self.pending = {k: np.concatenate([self.pending[k], new[k]]) for k in self.pending}
