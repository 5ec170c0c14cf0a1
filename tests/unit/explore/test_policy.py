"""The exploring slot policy: its logged propensities are the real frequencies, rules hold, the bandits learn."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from aisle.bundle import Histories
from aisle.config import ExploreConfig, RulesConfig
from aisle.explore import Explorer, ExploreState, Featurizer, pool_rows
from aisle.models.base import Vocab
from aisle.query import Filters
from aisle.rules import ItemAttributes, allowed
from aisle.types import IMPRESSION_SCHEMA

N = 30  # items 0..9 are the greedy list, 10..29 are cold
IDS = [f"i{r}" for r in range(N)]
ATTRS = ItemAttributes(brand=np.array([r % 3 for r in range(N)], np.int32),
                       leaf=np.array([r % 4 for r in range(N)], np.int32),
                       price=np.linspace(5, 150, N), available=np.array([r != 12 for r in range(N)]),
                       brand_names=["A", "B", "C"], leaf_names=["w", "x", "y", "z"],
                       paths=[("Top", "wxyz"[r % 4]) for r in range(N)])
GREEDY = np.arange(10)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _state(clicks: dict[str, tuple[float, float]]) -> ExploreState:
    """A state that has shown item -> (impressions, clicks)."""
    ids = list(clicks)
    return ExploreState(item_ids=tuple(ids), shown=np.array([clicks[i][0] for i in ids]),
                        rewards=np.array([clicks[i][1] for i in ids]))


def _explorer(cfg: ExploreConfig, state: ExploreState, rules: RulesConfig | None = None, seed: int = 0) -> Explorer:
    feats = Featurizer(ATTRS, {i: r for r, i in enumerate(IDS)}, Vocab.of([]), None, state,
                       (cfg.prior_clicks, cfg.prior_misses))
    counts = np.r_[np.full(10, 50.0), np.zeros(N - 10)]
    shown = state.counts(IDS)[0]
    return Explorer(cfg, rules or RulesConfig(), feats, pool_rows(cfg, counts, ATTRS.available, shown), IDS,
                    rng=np.random.default_rng(seed))


def test_the_pool_is_cold_in_stock_and_not_yet_graduated() -> None:
    cfg = ExploreConfig(enabled=True, graduate_impressions=100, pool=30)
    counts = np.r_[np.full(10, 50.0), np.zeros(N - 10)]
    shown = np.zeros(N)
    shown[14] = 500.0  # known well enough by now
    pool = pool_rows(cfg, counts, ATTRS.available, shown)
    assert set(pool.tolist()) == set(range(10, N)) - {12, 14}  # 12 is out of stock
    shown[20] = 50.0
    assert pool_rows(cfg.model_copy(update={"pool": 3}), counts, ATTRS.available, shown).tolist() == [29, 28, 27]
    # an item exploration tracks stays in the pool when it earns events (until it graduates by impressions)
    assert 3 in pool_rows(cfg, counts, ATTRS.available, shown, tracked=np.array([3])).tolist()


@pytest.mark.parametrize("policy", ["thompson", "linucb"])
def test_logged_propensities_are_the_frequencies_the_lists_are_shown_with(policy: str) -> None:
    """Over many requests, each (position, item) is shown as often as the propensity logged with it says, and a
    pin keeps its position; nothing else is needed for unbiased off-policy estimates."""
    cfg = ExploreConfig(enabled=True, share=0.3, slots=(1, 3), policy=policy, draws=64)  # type: ignore[arg-type]
    state = _state({f"i{r}": (40.0, float(r % 5)) for r in range(10, N)})
    ex = _explorer(cfg, state)
    pinned = np.zeros(10, bool)
    pinned[0] = True  # slot 1 falls on the pin: it moves to position 2
    runs = 6_000
    seen: Counter[tuple[int, int]] = Counter()
    logged: dict[tuple[int, int], float] = {}
    for _ in range(runs):
        res = ex.choose(GREEDY, pinned, 10, excluded=[], filters=None, history=np.zeros(0, np.int64))
        assert len(res.rows) == 10 and len(set(res.rows.tolist())) == 10
        assert res.rows[0] == 0  # the pin
        for p, (row, prop) in enumerate(zip(res.rows.tolist(), res.propensities.tolist(), strict=True)):
            seen[(p, row)] += 1
            assert logged.setdefault((p, row), prop) == pytest.approx(prop)
    explored = sum(c for (p, row), c in seen.items() if row >= 10)
    assert explored == pytest.approx(2 * runs * cfg.share, rel=0.1)
    for key, prop in logged.items():
        freq = seen[key] / runs
        assert abs(freq - prop) <= 4 * np.sqrt(prop * (1 - prop) / runs) + 1e-9, (key, freq, prop)


def test_explored_items_pass_the_hard_rules_and_the_brand_cap() -> None:
    cfg = ExploreConfig(enabled=True, share=1.0, slots=(2, 5), draws=32)
    # greedy rows 0..9 have brands A B C A B C A B C A; an exploring list of 2 slots keeps rows 0..7 (A B C A B C A
    # B), of 1 slot rows 0..8: under a cap of 3 every brand is full either way, so nothing is explored
    for cap, n_explored in ((4, 2), (3, 0)):
        ex = _explorer(cfg, ExploreState(), RulesConfig(max_per_brand=cap))
        for _ in range(200):
            res = ex.choose(GREEDY, np.zeros(10, bool), 10, excluded=[13, 16], filters=Filters(price_max=120.0),
                            history=np.zeros(0, np.int64))
            picked = res.rows[res.explored]
            assert len(picked) == n_explored
            assert not set(picked.tolist()) & {12, 13, 16}  # out of stock, excluded
            assert (ATTRS.price[picked] <= 120).all()
            assert not n_explored or np.bincount(ATTRS.brand[res.rows], minlength=3).max() <= cap
        if cap == 3:
            assert res.rows.tolist() == GREEDY.tolist() and (res.propensities == 1).all()
    ex = _explorer(cfg, ExploreState(), RulesConfig(max_per_brand=4))
    # nothing eligible: the list is the greedy list, every propensity 1
    res = ex.choose(GREEDY, np.zeros(10, bool), 10, excluded=[], filters=Filters(price_max=1.0),
                    history=np.zeros(0, np.int64))
    assert res.rows.tolist() == GREEDY.tolist() and (res.propensities == 1).all() and not res.explored.any()


def test_thompson_favours_the_item_that_earns_clicks() -> None:
    cfg = ExploreConfig(enabled=True, share=1.0, slots=(3,), draws=256)
    state = _state({**{f"i{r}": (200.0, 2.0) for r in range(10, N)}, "i21": (200.0, 40.0)})
    ex = _explorer(cfg, state)
    picks = Counter(int(ex.choose(GREEDY, np.zeros(10, bool), 10, excluded=[], filters=None,
                                  history=np.zeros(0, np.int64)).rows[2]) for _ in range(300))
    assert picks.most_common(1)[0][0] == 21 and picks[21] > 250


def test_linucb_learns_that_shoppers_click_their_own_categories() -> None:
    """Impressions of cold items to shoppers whose stored history is in leaf 'x' (1): clicks only on leaf-x items.
    After one update, LinUCB puts a leaf-x item in the slot for such a shopper, and not for a leaf-w one."""
    from aisle.bundle import Histories

    users = Vocab.of(["ux", "uw"])
    hist = Histories(np.array([0, 3, 6]), np.array([1, 5, 9, 0, 4, 8], np.int32), np.zeros(6, np.int8),
                     np.zeros(6, np.int64))
    cfg = ExploreConfig(enabled=True, share=1.0, slots=(3,), policy="linucb", alpha=0.1)
    rng = np.random.default_rng(0)
    rows, evs = [], []
    for n in range(600):
        item = int(rng.integers(10, N))
        user = "ux" if n % 2 else "uw"
        when = T0 + timedelta(minutes=n)
        rows.append({"request_id": f"r{n}", "timestamp": when, "user_id": user, "session_id": "s",
                     "surface": "recommendations", "item_id": IDS[item], "position": 3, "score": None,
                     "propensity": 0.5, "model_version": "v", "arm": None, "query": None})
        leaf = {"ux": 1, "uw": 0}[user]
        if ATTRS.leaf[item] == leaf and rng.random() < 0.6:
            evs.append({"user_id": user, "item_id": IDS[item], "event_type": "click", "request_id": f"r{n}",
                        "timestamp": when + timedelta(seconds=5)})
    imp = pl.DataFrame(rows, schema=IMPRESSION_SCHEMA)
    ev = pl.DataFrame(evs)
    feats = Featurizer(ATTRS, {i: r for r, i in enumerate(IDS)}, users, hist, ExploreState(), (1.0, 20.0))
    state = ExploreState().update(imp, ev, context=feats, cold=IDS[10:], attribution_seconds=86_400 * 365)
    assert state.rewards.sum() == len(evs) and state.shown.sum() > 0
    ex = Explorer(cfg, RulesConfig(), Featurizer(ATTRS, feats.index, users, hist, state, (1.0, 20.0)),
                  np.arange(10, N), IDS)
    for user, leaf in (("ux", 1), ("uw", 0)):
        history = hist.of(users.index[user])[0]
        row = ex.choose(GREEDY, np.zeros(10, bool), 10, excluded=[], filters=None, history=history).rows[2]
        assert ATTRS.leaf[row] == leaf, (user, row)


def test_slots_are_distinct_positions_and_come_sorted() -> None:
    assert ExploreConfig(slots=(7, 2)).slots == (2, 7)
    for bad in ((), (0,), (3, 3)):
        with pytest.raises(ValueError, match="distinct 1-based positions"):
            ExploreConfig(slots=bad)


def _random_requests(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, list[int], Filters | None]]:
    """Shopper histories, exclusions and filters of all kinds (a filter, or a request excluding all but a few cold
    items, leaves some of Thompson's short lists of best draws without enough of them: whole draws are read)."""
    out = []
    for _ in range(n):
        history = rng.choice(N, int(rng.integers(0, 6)), replace=False)
        hidden = int(rng.integers(0, 8)) if rng.random() < 0.7 else N - 10 - int(rng.integers(1, 4))
        excluded = [*history.tolist(), *rng.choice(np.arange(10, N), hidden, replace=False).tolist()]
        r = rng.random()
        filters = (Filters.of(brands=[ATTRS.brand_names[int(rng.integers(3))]]) if r < 0.25 else
                   Filters.of(categories=[ATTRS.leaf_names[int(rng.integers(4))]]) if r < 0.5 else
                   Filters.of(price_max=float(rng.uniform(30, 150))) if r < 0.7 else None)
        out.append((history, excluded, filters))
    return out


def _eligible(excluded: list[int], filters: Filters | None) -> np.ndarray:
    """The cold rows (10..29) the hard rules let a request show, by the rules' own check."""
    rows = np.arange(10, N)
    mask = np.zeros(N, bool)
    mask[excluded] = True
    return rows[allowed(rows, attrs=ATTRS, rules=RulesConfig(), excluded=mask, filters=filters)]


def test_linucb_shows_the_eligible_item_of_highest_upper_confidence_bound() -> None:
    """Serving's bounds (one matmul with a square root of A^-1, computed when the state loads) pick what the
    textbook formula theta'x + alpha sqrt(x'A^-1 x) picks, for each shopper, request and learned state."""
    rng = np.random.default_rng(3)
    users = Vocab.of([f"u{n}" for n in range(6)])
    lengths = rng.integers(0, 6, 6)
    hist = Histories(np.r_[0, np.cumsum(lengths)], rng.integers(0, N, lengths.sum()).astype(np.int32),
                     np.zeros(lengths.sum(), np.int8), np.zeros(lengths.sum(), np.int64))
    for trial in range(5):
        x = rng.normal(size=(300, 7))
        state = ExploreState(item_ids=tuple(IDS[10:]), shown=rng.integers(0, 50, N - 10).astype(float),
                             rewards=rng.integers(0, 5, N - 10).astype(float), a=np.eye(7) + x.T @ x,
                             b=rng.normal(size=7) * 3)
        cfg = ExploreConfig(enabled=True, policy="linucb", alpha=float(rng.uniform(0.1, 2.0)))
        feats = Featurizer(ATTRS, {i: r for r, i in enumerate(IDS)}, users, hist, state, (1.0, 20.0))
        ex = Explorer(cfg, RulesConfig(), feats, np.arange(10, N), IDS)
        a_inv = np.linalg.inv(state.a)
        theta = a_inv @ state.b
        for user in range(6):
            history = hist.of(user)[0]
            for _, excluded, filters in _random_requests(rng, 10):
                ok = _eligible([*history.tolist(), *excluded], filters)
                res = ex.choose(GREEDY, np.zeros(10, bool), 10, excluded=[*history.tolist(), *excluded],
                                filters=filters, history=history)
                if not len(ok):
                    assert not res.explored.any()
                    continue
                ctx = feats.rows(history, ok, feats.rate([IDS[r] for r in ok]))
                bound = ctx @ theta + cfg.alpha * np.sqrt(np.einsum("ij,jk,ik->i", ctx, a_inv, ctx))
                assert res.rows[res.explored].tolist() == [ok[np.argmax(bound)]], (trial, user)
                assert res.propensities[res.explored].tolist() == [1.0]


def test_thompson_picks_and_propensities_are_those_of_whole_draws() -> None:
    """Each draw's best eligible cold items, read from the draws' short lists when the state loads (whole draws when
    a request's filters leave a short list without enough of them): the list is one draw's, and each slot's
    propensity is the share of draws that put the same item there."""
    rng = np.random.default_rng(4)
    state = _state({f"i{r}": (float(rng.integers(0, 60)), float(rng.integers(0, 6))) for r in range(10, N)})
    for slots in ((3,), (2, 6)):
        cfg = ExploreConfig(enabled=True, share=1.0, slots=slots, policy="thompson", draws=64)
        ex = _explorer(cfg, state, seed=5)
        pool = ex.pool
        for history, excluded, filters in _random_requests(rng, 150):
            ok = np.isin(pool, _eligible(excluded, filters))
            res = ex.choose(GREEDY, np.zeros(10, bool), 10, excluded=excluded, filters=filters, history=history)
            m = min(len(slots), int(ok.sum()))
            assert int(res.explored.sum()) == m
            if not m:
                continue
            # per draw, its m best eligible items in order, from the whole draw
            masked = np.where(ok[None, :], ex.draws, -np.inf)
            best = pool[np.argsort(-masked, axis=1, kind="stable")[:, :m]]
            shown = res.rows[res.explored]
            assert (best == shown[None, :]).all(axis=1).any()  # the list is some draw's
            assert res.propensities[res.explored] == pytest.approx((best == shown[None, :]).mean(axis=0))
