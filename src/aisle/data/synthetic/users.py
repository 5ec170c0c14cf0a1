"""Shoppers with latent tastes: preferred leaves, favourite brands, a price tier, a gender for apparel,
a search habit, an activity level and a join date. Only a coarse, noisy part of this reaches the users
table (segment, region, interests), as a real store would know it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from aisle.data.synthetic.catalog import DAY, leaf_demand
from aisle.data.synthetic.vocab import BRANDS, LEAVES, PREMIUM, TOP_DEMAND
from aisle.types import USER_SCHEMA, conform

REGIONS = ("US-West", "US-Mountain", "US-Midwest", "US-South", "US-Northeast", "Canada")
REGION_P = (0.24, 0.08, 0.2, 0.3, 0.14, 0.04)
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_P = (0.14, 0.27, 0.23, 0.17, 0.12, 0.07)


@dataclass
class Users:
    taste: np.ndarray  # (users, leaves) probabilities: where a shopper's sessions start
    brand_aff: np.ndarray  # (users, brands) log affinity
    z: np.ndarray  # preferred price tier, on the catalog's standardized log-price scale
    gender: np.ndarray  # 0 women's, 1 men's, 2 no preference (apparel and footwear only)
    search_p: np.ndarray  # chance a session starts with a search
    activity: np.ndarray  # relative session rate
    join: np.ndarray  # seconds from the span start (negative: before it)
    user_ids: np.ndarray  # object
    frame: pl.DataFrame


def _top_k(keys: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per row, a mask of the k[row] largest keys (Gumbel keys make this sampling without replacement)."""
    rank = np.argsort(np.argsort(-keys, axis=1, kind="stable"), axis=1, kind="stable")
    return (rank < k[:, None]) & np.isfinite(keys)


def _gumbel(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return -np.log(-np.log(rng.random(shape) + 1e-300) + 1e-300)


def build_users(n_users: int, rng: np.random.Generator, *, start: datetime, days: int) -> Users:
    """Draw every shopper's hidden tastes (vectorized: 100,000 users take well under a second)."""
    n_leaves = len(LEAVES)
    tops = list(TOP_DEMAND)
    top_p = np.array([TOP_DEMAND[t] for t in tops])
    leaf_top = np.array([tops.index(lf.path[0]) for lf in LEAVES])
    demand = leaf_demand()
    # one or two top levels, then 2-4 leaves inside them, weighted by demand
    persona = _top_k(np.log(top_p) + _gumbel(rng, (n_users, len(tops))), 1 + (rng.random(n_users) < 0.4))
    in_pool = persona[:, leaf_top]
    keys = np.where(in_pool, np.log(demand) + _gumbel(rng, (n_users, n_leaves)), -np.inf)
    fav = _top_k(keys, rng.integers(2, 5, n_users))
    w = np.where(fav, rng.gamma(1.5, size=(n_users, n_leaves)), 0.0)
    taste = 0.75 * w / w.sum(axis=1, keepdims=True) + 0.25 * demand / demand.sum()

    z = rng.normal(0.0, 0.7, n_users)
    tier = np.log(np.array([b.tier for b in BRANDS])) / np.log(PREMIUM)  # -1 budget .. +1 premium
    brand_aff = 0.5 * z[:, None] * tier[None, :]  # premium shoppers lean to premium brands
    covers = np.zeros((len(BRANDS), n_leaves), dtype=bool)
    for b, br in enumerate(BRANDS):
        for li, lf in enumerate(LEAVES):
            key = "/".join(lf.path)
            covers[b, li] = any(key == c or key.startswith(c + "/") for c in br.covers)
    liked = ((taste > 0.1).astype(np.int64) @ covers.T.astype(np.int64)) > 0  # brands selling what they like
    brand_aff += 1.3 * _top_k(np.where(liked, _gumbel(rng, liked.shape), -np.inf), np.full(n_users, 2))

    gender = rng.choice(3, size=n_users, p=[0.47, 0.43, 0.10])
    search_p = rng.beta(2.0, 4.5, n_users)
    activity = np.minimum(rng.lognormal(0.0, 0.9, n_users), 12.0)
    span = days * DAY
    late = rng.random(n_users) < 0.2
    join = np.where(late, rng.uniform(0, 0.9 * span, n_users), -rng.uniform(DAY, 5 * 365 * DAY, n_users))

    width = max(5, len(str(n_users - 1)))
    user_ids = np.array([f"u{k:0{width}d}" for k in range(n_users)], dtype=object)
    segment = np.where(z < -0.45, "budget", np.where(z > 0.45, "premium", "mainstream"))
    region = rng.choice(len(REGIONS), size=n_users, p=REGION_P)
    age = rng.choice(len(AGE_BANDS), size=n_users, p=AGE_P)
    mobile = rng.random(n_users) < 0.62
    shares = rng.random(n_users) < 0.5
    t0 = np.datetime64(start.replace(tzinfo=None), "s")
    since = (t0 + join.astype("timedelta64[s]")).astype("datetime64[M]").astype(str)
    attrs = []
    for u in range(n_users):
        a: dict[str, object] = {"segment": str(segment[u]), "region": REGIONS[region[u]],
                                "age_band": AGE_BANDS[age[u]], "device": "mobile" if mobile[u] else "desktop",
                                "member_since": str(since[u])}
        if shares[u]:  # half the shoppers told the newsletter form what they like
            a["interests"] = [tops[t] for t in np.flatnonzero(persona[u])]
        attrs.append(json.dumps(a, sort_keys=True))
    frame = conform(pl.DataFrame({"user_id": user_ids.tolist(), "attributes": attrs}), USER_SCHEMA)
    return Users(taste=taste, brand_aff=brand_aff, z=z, gender=gender, search_p=search_p, activity=activity,
                 join=join, user_ids=user_ids, frame=frame)
