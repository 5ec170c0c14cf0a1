"""The recommendation hot path gives the answers of the straightforward computation.

Why: the request path was cut for CPU (rules as arrays without a trip through Python tuples, the scores' span only
when a rule uses it, a card's static fields kept per runtime, a request's last action per item looked up once);
these tests hold it to a plain, obviously right reading of the same rules and catalog over many random requests.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from aisle.config import Pin, RulesConfig
from aisle.query import Filters, Query
from aisle.rules import ItemAttributes, apply_rules

BRANDS = ["Acme", "Borealis", "Cobalt", "Dune", "Ember"]
LEAVES = ["mugs", "kettles", "lamps", "rugs"]


def _catalog(rng: random.Random, n: int) -> ItemAttributes:
    brand = [rng.randrange(-1, len(BRANDS)) for _ in range(n)]
    leaf = [rng.randrange(-1, len(LEAVES)) for _ in range(n)]
    return ItemAttributes(
        brand=np.array(brand, np.int32), leaf=np.array(leaf, np.int32),
        price=np.array([rng.choice([float("nan"), rng.uniform(1, 100)]) for _ in range(n)]),
        available=np.array([rng.random() < 0.8 for _ in range(n)], bool), brand_names=BRANDS, leaf_names=LEAVES,
        paths=[("Home", LEAVES[c]) if c >= 0 else () for c in leaf])


def _rules(rng: random.Random, ids: list[str]) -> RulesConfig:
    return RulesConfig(
        only_available=rng.random() < 0.7, max_per_brand=rng.choice([None, None, 1, 2]),
        diversity=rng.choice([0.0, 0.0, 0.3, 1.0]),
        boost_items={rng.choice(ids): rng.uniform(-1, 1) for _ in range(rng.randrange(3))},
        boost_brands={rng.choice(BRANDS).lower(): rng.uniform(-1, 1) for _ in range(rng.randrange(2))},
        boost_categories={rng.choice(LEAVES): rng.uniform(-1, 1) for _ in range(rng.randrange(2))},
        pins=tuple(Pin(item_id=rng.choice(ids), position=rng.randrange(1, 6)) for _ in range(rng.choice([0, 0, 1, 2]))))


def _filters(rng: random.Random) -> Filters | None:
    return rng.choice([None, Filters(), Filters(categories=[rng.choice(LEAVES)]),
                       Filters(brands=[rng.choice(BRANDS)], price_max=rng.uniform(20, 100)),
                       Filters(price_min=rng.uniform(0, 50)), Filters(exclude_brands=[rng.choice(BRANDS)])])


def _reference(rows: list[int], scores: list[float], k: int, attrs: ItemAttributes, rules: RulesConfig,
               index: dict[str, int], exclude: set[int], filters: Filters | None
               ) -> list[tuple[int, float, bool, int]]:
    """The rules read plainly, one candidate at a time: (row, score, pinned, position) of each item shown."""
    def allowed(row: int) -> bool:
        if row in exclude or (rules.only_available and not attrs.available[row]):
            return False
        return filters is None or filters.is_empty() or bool(attrs.passes(np.array([row]), filters)[0])

    kept = [(pos, row, s) for pos, (row, s) in enumerate(zip(rows, scores, strict=True)) if allowed(row)]
    span = (max(s for *_, s in kept) - min(s for *_, s in kept)) if len(kept) > 1 else 1.0
    span = span or 1.0
    if rules.boost_items or rules.boost_brands or rules.boost_categories:
        brands = {b.lower(): w for b, w in rules.boost_brands.items()}
        leaves = {c.lower(): w for c, w in rules.boost_categories.items()}
        boosted = []
        for pos, row, s in kept:
            b = 0.0
            for item, w in rules.boost_items.items():
                b += w if index.get(item) == row else 0.0
            b += brands.get(BRANDS[attrs.brand[row]].lower(), 0.0) if attrs.brand[row] >= 0 else 0.0
            b += leaves.get(LEAVES[attrs.leaf[row]].lower(), 0.0) if attrs.leaf[row] >= 0 else 0.0
            boosted.append((pos, row, s + span * b))
        kept = boosted
    pins = [(index[p.item_id], p.position) for p in rules.pins if p.item_id in index]
    pinned_rows = {r for r, _ in pins}
    kept = [c for c in kept if c[1] not in pinned_rows]
    chosen: list[tuple[int, float, bool, int]] = []
    eff = {i: s for i, (_, _, s) in enumerate(kept)}
    per_brand: dict[int, int] = {}
    while len(chosen) < k and eff:
        i = max(eff, key=lambda j: (eff[j], -j))  # the best, the earliest of equals
        del eff[i]
        pos, row, s = kept[i]
        brand = int(attrs.brand[row])
        if rules.max_per_brand is not None and brand >= 0 and per_brand.get(brand, 0) >= rules.max_per_brand:
            continue
        chosen.append((row, s, False, pos))
        per_brand[brand] = per_brand.get(brand, 0) + 1
        if rules.diversity and attrs.leaf[row] >= 0:
            for j in eff:
                if attrs.leaf[kept[j][1]] == attrs.leaf[row]:
                    eff[j] -= rules.diversity * span
    top = max((c[1] for c in chosen), default=0.0)
    for row, position in sorted(pins, key=lambda p: p[1]):
        if allowed(row) and position <= k:
            chosen.insert(min(position - 1, len(chosen)), (row, top, True, -1))
    return chosen[:k]


def test_rules_pick_what_the_plain_reading_picks_over_random_requests() -> None:
    rng = random.Random(11)
    n = 80
    ids = [f"i{i}" for i in range(n)]
    index = {item: i for i, item in enumerate(ids)}
    checked = pinned = 0
    for _ in range(1_500):
        attrs = _catalog(rng, n)
        rows = rng.sample(range(n), rng.randrange(0, 50))
        scores = [rng.choice([rng.uniform(0, 1), 0.5]) for _ in rows]  # ties too
        rules, filters = _rules(rng, ids), _filters(rng)
        exclude = set(rng.sample(range(n), rng.randrange(0, 20)))
        k = rng.randrange(1, 13)
        got = apply_rules(np.array(rows, np.int64), np.array(scores), k, attrs=attrs, rules=rules, index=index,
                          exclude=sorted(exclude), filters=filters)
        want = _reference(rows, scores, k, attrs, rules, index, exclude, filters)
        assert got.rows.tolist() == [c[0] for c in want]
        assert got.scores.tolist() == pytest.approx([c[1] for c in want], rel=1e-12, abs=1e-12)
        assert got.pinned.tolist() == [c[2] for c in want]
        assert got.positions.tolist() == [c[3] for c in want]
        assert (got.rows.dtype, got.scores.dtype, got.pinned.dtype, got.positions.dtype) == (
            np.int64, np.float64, np.bool_, np.int64)
        checked += bool(want)
        pinned += any(c[2] for c in want)
    assert checked > 1_000 and pinned > 50  # the cases were not all empty lists, and pins were among them


def test_last_action_is_the_latest_event_on_the_item() -> None:
    rng = random.Random(3)
    kinds = ("view", "add_to_cart", "purchase")
    for _ in range(500):
        history = [rng.randrange(10) for _ in range(rng.randrange(0, 30))]
        types = tuple(rng.choice(kinds) for _ in history)
        q = Query(0, np.array(history, np.int64), types)
        for item in range(12):
            latest = next((t for i, t in zip(reversed(history), reversed(types), strict=True) if i == item), "view")
            assert q.last_action(item) == latest


def test_cards_read_the_catalog_as_it_is_after_each_upsert(tmp_path: Path) -> None:
    from aisle.bundle import Bundle
    from aisle.config import Settings
    from aisle.data.synthetic import SyntheticConfig
    from aisle.pipeline import SourceSpec
    from aisle.serve.runtime import Runtime
    from tests.bundles import save_bundle, synthetic_shop

    shop = synthetic_shop(SyntheticConfig(n_items=200, n_users=60, n_events=2_000, seed=5))
    save_bundle(shop, [SourceSpec("itemknn", "itemknn", "i2i"), SourceSpec("trending", "trending", "trending")],
                tmp_path / "b", search=False)
    rt = Runtime(Bundle.load(tmp_path / "b", search=False), Settings())

    def plain(runtime: Runtime, row: int) -> dict[str, object]:
        rec = runtime.item_record(row)
        price = rec["price"]
        return {"item_id": rec["item_id"], "title": rec["title"] or rec["item_id"], "brand": rec["brand"],
                "price": None if price is None or price != price else float(price), "currency": rec["currency"],
                "category": list(rec["categories"] or []), "available": bool(runtime.attrs.available[row])}

    rows = range(len(rt.item_ids))
    assert [rt.card(r) for r in rows] == [plain(rt, r) for r in rows]  # fills the kept static fields
    assert [(rt.title(r), rt.item_id(r)) for r in rows] == [(rt.item_record(r)["title"], rt.item_record(r)["item_id"])
                                                             for r in rows]
    assert rt.title(-1) is None and rt.item_id(len(rt.item_ids)) is None
    before = rt.card(3)
    changed = {**rt.item_record(3), "title": "Renamed lamp", "price": 12.5, "available": False,
               "categories": ["Home", "Lamps"]}
    new = {**rt.item_record(4), "item_id": "brand-new", "title": None}
    after = rt.with_upserts([changed, new])
    assert after.card(3) == plain(after, 3) and after.card(3)["title"] == "Renamed lamp"
    assert after.card(3)["available"] is False and after.title(3) == "Renamed lamp"
    assert rt.card(3) == before  # the runtime serving before the upsert answers as it did
    row = after.index["brand-new"]
    assert after.card(row)["title"] == "brand-new" and after.title(row) is None and after.item_id(row) == "brand-new"
    card = after.card(3, 0.123456789, {"type": "x"})
    assert card["score"] == 0.12346 and card["explanation"] == {"type": "x"}
    card["category"].append("mutated")
    assert after.card(3)["category"] == ["Home", "Lamps"]  # each card its own list


def test_seen_purchases_are_kept_out_as_if_the_request_excluded_them(tmp_path: Path) -> None:
    """`exclude_seen = "purchased"` keeps out the shopper's purchases (stored and live) and nothing else: the same
    list as no seen-exclusion with those items in the request's `exclude`. (The rows not to show travel as one
    array through the rules and the exploring slot.)"""
    from aisle.bundle import Bundle
    from aisle.config import Settings
    from aisle.data.synthetic import SyntheticConfig
    from aisle.pipeline import SourceSpec
    from aisle.serve.runtime import Runtime
    from tests.bundles import save_bundle, synthetic_shop

    shop = synthetic_shop(SyntheticConfig(n_items=200, n_users=60, n_events=2_000, seed=6))
    save_bundle(shop, [SourceSpec("itemknn", "itemknn", "i2i"), SourceSpec("trending", "trending", "trending")],
                tmp_path / "b", search=False)
    bundle = Bundle.load(tmp_path / "b", search=False)
    runtimes = {mode: Runtime(bundle, Settings(rules=RulesConfig(exclude_seen=mode))) for mode in ("purchased", "none")}
    rng = random.Random(6)
    ids = list(runtimes["none"].item_ids)
    compared = purchases_shown_without = 0
    for user in [str(u) for u in bundle.users.ids[:40]]:
        live = [(rng.choice(ids), rng.choice(["view", "purchase", "add_to_cart"]), 0)
                for _ in range(rng.randrange(1, 6))]
        q = runtimes["purchased"].query(user, live, False)
        bought = sorted({ids[int(r)] for r, t in zip(q.history, q.types, strict=True) if t == "purchase"})
        got = [c["item_id"] for c in runtimes["purchased"].recommend(q, 10)["items"]]
        plain = runtimes["none"].recommend(runtimes["none"].query(user, live, False, exclude=bought), 10)["items"]
        assert got == [c["item_id"] for c in plain], user
        assert not set(got) & set(bought)
        free = runtimes["none"].recommend(runtimes["none"].query(user, live, False), 10)["items"]
        purchases_shown_without += bool({c["item_id"] for c in free} & set(bought))
        compared += bool(bought)
    assert compared >= 20 and purchases_shown_without  # the exclusion had something to do
