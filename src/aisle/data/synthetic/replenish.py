"""Replenishment: shoppers who buy consumables again and again, each on a planted cadence (opt-in).

Why a separate pass, with its own random stream: the base simulator's output is pinned byte for byte by tests
and relied on by the demo, so `SyntheticConfig.replenishment = 0` (the default) must leave it untouched. With a
fraction above 0, that share of shoppers keeps a household "pantry" of consumable items (the leaves marked
`consumable` in `vocab`), and each pantry item is bought again after about the leaf's cadence (`CADENCE_DAYS`),
scaled by the shopper's own pace and by the quantity bought last time, with log-normal jitter. Pantry items are
adopted at random times, so how often an item was bought says little about whether it is due now: what a
repeat-purchase model must learn is *when*, not only *what*. Regulars also try a few consumables once and never
again, which a "most purchased" list cannot tell apart from a due staple only by count. Each purchase is its own
short session (view, add to cart, purchase), so the funnel invariants of the base store hold.
"""

from __future__ import annotations

import numpy as np

from aisle.data.synthetic.behaviour import CART, PURCHASE, VIEW
from aisle.data.synthetic.catalog import DAY, Catalog
from aisle.data.synthetic.users import Users
from aisle.data.synthetic.vocab import LEAVES

#: The planted mean days between two purchases of one pantry item, per consumable leaf.
CADENCE_DAYS: dict[str, float] = {
    "Coffee beans": 14.0, "Protein powder": 24.0, "Shampoo": 30.0, "Conditioner": 36.0, "Cleansers": 42.0,
    "Moisturizers": 50.0, "Sunscreen": 60.0, "Memory cards": 90.0,
}
PANTRY = (12, 30)  # pantry size per regular: uniform in [lo, hi)
TRIALS = (3, 10)  # consumables tried once
PACE_SIGMA = 0.3  # the log-normal spread of a shopper's own pace (1 = the leaf's cadence)
JITTER_SIGMA = 0.12  # per purchase


def _check_leaves() -> np.ndarray:
    """Per leaf, its planted cadence in days (nan for durable goods); every consumable leaf must have one."""
    missing = [lf.name for lf in LEAVES if lf.consumable and lf.name not in CADENCE_DAYS]
    if missing:
        raise ValueError(f"consumable leaves without a planted cadence: {', '.join(missing)}")
    return np.array([CADENCE_DAYS[lf.name] if lf.consumable else np.nan for lf in LEAVES])


def replenishment_events(cat: Catalog, users: Users, fraction: float, seed: int, days: int, first_sid: int
                         ) -> dict[str, np.ndarray]:
    """The replenishment sessions as raw event columns (the simulator's `Log.arrays()` layout)."""
    rng = np.random.default_rng([seed, 0x5E9])  # its own stream: the base store's draws are not shifted
    cadence = _check_leaves()
    span = days * DAY
    # old, always in stock: a pantry item that sold out would plant a cadence nobody could follow
    consumable_items = np.flatnonzero(np.isfinite(cadence[cat.leaf]) & (cat.created < 0) & ~np.isfinite(cat.gone))
    n_users = len(users.user_ids)
    regulars = np.flatnonzero(rng.random(n_users) < fraction)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "t", "value")}
    for u in regulars:
        taste = users.taste[u][cat.leaf[consumable_items]] + 0.02
        n_pantry = int(rng.integers(*PANTRY))
        n_trial = int(rng.integers(*TRIALS))
        picked = rng.choice(consumable_items, size=min(n_pantry + n_trial, len(consumable_items)), replace=False,
                            p=taste / taste.sum())
        pantry, trials = picked[:n_pantry], picked[n_pantry:]
        pace = float(rng.lognormal(0.0, PACE_SIGMA))
        for item in pantry:
            gap = cadence[cat.leaf[item]] * pace * float(rng.lognormal(0.0, 0.1)) * DAY
            t = float(rng.uniform(0.0, 0.7 * span))
            while t < span:
                qty = 2.0 if rng.random() < 0.15 else 1.0
                cols["user"].append(np.array([u]))
                cols["item"].append(np.array([item]))
                cols["t"].append(np.array([t]))
                cols["value"].append(np.array([qty]))
                t += gap * qty * float(rng.lognormal(0.0, JITTER_SIGMA))
        for item in trials:
            cols["user"].append(np.array([u]))
            cols["item"].append(np.array([item]))
            cols["t"].append(np.array([rng.uniform(0.0, span)]))
            cols["value"].append(np.array([1.0]))
    if not cols["user"]:
        return {k: np.empty(0) for k in ("sess", "user", "item", "etype", "t", "value", "qref")}
    user, item = np.concatenate(cols["user"]), np.concatenate(cols["item"])
    tp, qty = np.concatenate(cols["t"]), np.concatenate(cols["value"])
    n = len(user)
    sess = first_sid + np.arange(n)
    # one short session per purchase: view, cart (quantity), purchase (quantity)
    return {"sess": np.tile(sess, 3).astype(np.int32), "user": np.tile(user, 3).astype(np.int32),
            "item": np.tile(item, 3).astype(np.int32),
            "etype": np.repeat(np.array([VIEW, CART, PURCHASE], np.int8), n),
            "t": np.concatenate([np.maximum(tp - 150.0, 0.0), np.maximum(tp - 60.0, 0.0), tp]),
            "value": np.concatenate([np.full(n, np.nan), qty, qty]).astype(np.float32),
            "qref": np.full(3 * n, -1, np.int32)}


__all__ = ["CADENCE_DAYS", "replenishment_events"]
