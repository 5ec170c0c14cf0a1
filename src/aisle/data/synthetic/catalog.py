"""The catalog: product lines per leaf, titles from attribute vocabularies, prices, popularity and query forms.

The generator works on integer item indices sorted by leaf; `Catalog` keeps the per-item arrays that the
behaviour model samples from, and `items_frame()` turns them into the ITEM_SCHEMA frame once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from aisle.data.synthetic.vocab import BRANDS, COMPLEMENTS, LEAVES, MODEL_SUFFIXES, MODEL_WORDS, SEASONS, TOP_DEMAND
from aisle.types import ITEM_SCHEMA, conform

DAY = 86_400.0
N_RELATED = 6
#: Query patterns, each with the constraint it puts on the results a shopper then views:
#: (name, attribute slot or -1, brand, price cap, product line). Slots: 0 feature, 1 spec, 2 color, 3 gender.
PATTERNS: tuple[tuple[str, int, bool, bool, bool], ...] = (
    ("noun", -1, False, False, False),  # "hiking boots"
    ("feature", 0, False, False, False),  # "waterproof hiking boots"
    ("brand", -1, True, False, False),  # "lumora camera"
    ("brand_cap", -1, True, True, False),  # "lumora camera under $500"
    ("spec", 1, False, False, False),  # "memory card 64gb"
    ("color", 2, False, False, False),  # "brown hiking boots"
    ("gender", 3, False, False, False),  # "womens hiking boots"
    ("model", -1, True, False, True),  # "northpeak summit pro" (navigational)
    ("cap", -1, False, True, False),  # "tent under $200"
)
PATTERN_P = np.array([0.16, 0.16, 0.12, 0.05, 0.14, 0.08, 0.07, 0.10, 0.12])
CAPS = np.array([10, 20, 25, 30, 40, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000])
SLOTS = ("feature", "spec", "color", "gender")


@dataclass
class Catalog:
    """Per-item arrays (index = internal item number, items sorted by leaf) plus the per-leaf structure."""

    leaf: np.ndarray  # int, leaf index
    brand: np.ndarray  # int, brand index
    line: np.ndarray  # int, product line
    price: np.ndarray  # float USD
    z: np.ndarray  # standardized log price within the leaf: the shopper's price tier lives on this scale
    quality: np.ndarray  # latent quality: more carts, better ratings
    created: np.ndarray  # seconds from the span start (negative: before it)
    gone: np.ndarray  # seconds from the span start when it went out of stock (inf: never)
    slots: np.ndarray  # (n, 4) attribute value codes for query constraints, -1 where the leaf has none
    related: np.ndarray  # (n, N_RELATED) same line first, then nearest in price within the leaf
    gcdf: np.ndarray  # leaf index + within-leaf cumulative popularity: sample a leaf's item by searchsorted
    leaf_start: np.ndarray
    leaf_end: np.ndarray
    staple: np.ndarray  # per leaf, its most popular item: old and always in stock, so never a dead end
    cap: np.ndarray  # per item, the round price cap a shopper looking at it would type ("under $200")
    queries: np.ndarray  # (n, len(PATTERNS)) object: the query each pattern makes for this item
    valid_pattern: np.ndarray  # (n, len(PATTERNS)) bool
    item_ids: np.ndarray  # object: external ids, a permutation unrelated to the leaf order
    frame: pl.DataFrame  # ITEM_SCHEMA

    @property
    def n(self) -> int:
        return len(self.leaf)


def leaf_paths() -> list[tuple[str, ...]]:
    return [lf.path for lf in LEAVES]


def leaf_demand() -> np.ndarray:
    """How often shoppers want each leaf: its top level's demand shared by weight among the top's leaves."""
    tops = [lf.path[0] for lf in LEAVES]
    w = np.array([lf.weight for lf in LEAVES], dtype=np.float64)
    top_total = {t: sum(w[i] for i in range(len(w)) if tops[i] == t) for t in set(tops)}
    return np.array([TOP_DEMAND[tops[i]] * w[i] / top_total[tops[i]] for i in range(len(w))])


def season_matrix(start: datetime, days: int) -> np.ndarray:
    """(leaves, days + 1) demand multipliers: exp(a * cos(2π (day of year - peak) / 365))."""
    doy = np.array([(start + timedelta(days=d)).timetuple().tm_yday for d in range(days + 1)], dtype=np.float64)
    out = np.empty((len(LEAVES), days + 1))
    for i, lf in enumerate(LEAVES):
        peak, amp = lf.season or SEASONS[lf.path[0]]
        out[i] = np.exp(amp * np.cos(2 * np.pi * (doy - peak) / 365.0))
    return out


def neighbours() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded (leaves, k) tables of sibling leaves (same parent, else same top) and complement leaves.

    Returns siblings, sibling counts, complement cumulative weights and complement leaves (-1 padded).
    """
    names = [lf.name for lf in LEAVES]
    parents = [lf.path[:-1] for lf in LEAVES]
    sib: list[list[int]] = []
    for i, p in enumerate(parents):
        same = [j for j in range(len(LEAVES)) if j != i and parents[j] == p]
        if not same:
            same = [j for j in range(len(LEAVES)) if j != i and parents[j][0] == p[0]]
        sib.append(same)
    k = max(len(s) for s in sib)
    sibs = np.full((len(LEAVES), k), -1, dtype=np.int64)
    for i, s in enumerate(sib):
        sibs[i, : len(s)] = s
    kc = max(len(v) for v in COMPLEMENTS.values())
    comp = np.full((len(LEAVES), kc), -1, dtype=np.int64)
    ccdf = np.ones((len(LEAVES), kc))  # rows without complements never get sampled from
    for name, targets in COMPLEMENTS.items():
        i = names.index(name)
        w = np.array(list(targets.values()), dtype=np.float64)
        comp[i, : len(w)] = [names.index(t) for t in targets]
        ccdf[i, : len(w)] = np.cumsum(w / w.sum())
    return sibs, np.array([len(s) for s in sib]), ccdf, comp


def _brands_for(path: tuple[str, ...]) -> list[int]:
    key = "/".join(path)
    return [b for b, br in enumerate(BRANDS) if any(key == c or key.startswith(c + "/") for c in br.covers)]


def _allocate(total: int, share: np.ndarray) -> np.ndarray:
    """Largest-remainder allocation with at least one per leaf."""
    raw = share / share.sum() * (total - len(share))
    counts = np.floor(raw).astype(np.int64) + 1
    rest = total - counts.sum()
    counts[np.argsort(-(raw - np.floor(raw)), kind="stable")[:rest]] += 1
    return counts


def _nice_price(p: np.ndarray) -> np.ndarray:
    """Shop prices: $x.99 below $100, $x5/x0 minus a cent up to $1000, tens minus a cent above."""
    p = np.maximum(p, 1.0)
    return np.where(p < 100, np.floor(p) + 0.99,
                    np.where(p < 1000, np.maximum(np.round(p / 5) * 5, 100) - 0.01,
                             np.round(p / 10) * 10 - 0.01))


def _spec_text(value: str, rng: np.random.Generator) -> str:
    v = value.lower()
    if rng.random() < 0.5 and len(v.split()) == 2 and v.split()[0].replace(",", "").replace(".", "").isdigit():
        v = v.replace(" ", "")  # "20 w" -> "20w", as people type it
    return v


def build_catalog(n_items: int, rng: np.random.Generator, *, start: datetime, days: int,
                  new_fraction: float, unavailable_fraction: float) -> Catalog:
    """Draw product lines leaf by leaf; see the package docstring for what each piece is for."""
    span = days * DAY
    n_leaves = len(LEAVES)
    counts = _allocate(n_items, leaf_demand() ** 0.7)  # assortment is flatter than demand
    brand_pop = rng.lognormal(0.0, 0.6, size=len(BRANDS))
    words = [w + s for w in MODEL_WORDS for s in MODEL_SUFFIXES]
    model_orders: dict[tuple[int, int], tuple[np.ndarray, list[int]]] = {}

    leaf_a, brand_a, line_a, price_a, codes_a, model_a, lineq_a = [], [], [], [], [], [], []
    line_no = 0
    for li, lf in enumerate(LEAVES):
        ok = _brands_for(lf.path)
        if len(ok) < 2:
            raise AssertionError(f"leaf {lf.name} has fewer than 2 brands")
        bp = brand_pop[ok] / brand_pop[ok].sum()
        vpos = [a.name for a in lf.attrs].index(lf.variant)
        nvals = [len(a.values) for a in lf.attrs]
        made = 0
        while made < counts[li]:
            b = ok[int(rng.choice(len(ok), p=bp))]
            order, ctr = model_orders.setdefault((b, li), (rng.permutation(len(words)), [0]))
            c = ctr[0]
            ctr[0] += 1
            model = words[order[c % len(words)]] + (f" S{c // len(words) + 1}" if c >= len(words) else "")
            size = int(min(rng.geometric(0.45), nvals[vpos], 4, counts[li] - made))
            base = np.array([_attr_draw(a.name, n, rng) for a, n in zip(lf.attrs, nvals, strict=True)])
            variants = rng.choice(nvals[vpos], size=size, replace=False)
            logp = math.log(lf.median) + math.log(BRANDS[b].tier) + lf.sigma * rng.standard_normal()
            line_quality = rng.normal(0.0, 0.5)
            for v in variants:
                codes = base.copy()
                codes[vpos] = v
                lp = logp + sum(a.step * (codes[k] - (nvals[k] - 1) / 2) for k, a in enumerate(lf.attrs) if a.step)
                leaf_a.append(li)
                brand_a.append(b)
                line_a.append(line_no)
                price_a.append(math.exp(lp))
                codes_a.append(codes)
                model_a.append(model)
                lineq_a.append(line_quality)
            line_no += 1
            made += size

    n = len(leaf_a)
    leaf = np.array(leaf_a, dtype=np.int64)
    brand = np.array(brand_a, dtype=np.int64)
    line = np.array(line_a, dtype=np.int64)
    price = _nice_price(np.array(price_a))
    med = np.array([lf.median for lf in LEAVES])[leaf]
    sig = np.array([lf.sigma for lf in LEAVES])[leaf]
    z = (np.log(price) - np.log(med)) / sig
    quality = np.array(lineq_a) + rng.normal(0.0, 0.2, size=n)

    # Long tail: rank items within their leaf by brand pull, quality and luck, then give rank r a Zipf weight.
    score = np.log(brand_pop[brand]) + 0.8 * quality + rng.normal(0.0, 0.7, size=n)
    leaf_start = np.searchsorted(leaf, np.arange(n_leaves), side="left")
    leaf_end = np.searchsorted(leaf, np.arange(n_leaves), side="right")
    pop = np.empty(n)
    staple = np.empty(n_leaves, dtype=np.int64)
    for li in range(n_leaves):
        s, e = leaf_start[li], leaf_end[li]
        order = np.argsort(-score[s:e], kind="stable")
        ranks = np.empty(e - s)
        ranks[order] = np.arange(e - s)
        pop[s:e] = 1.0 / (ranks + 1.0) ** rng.uniform(0.95, 1.2)
        staple[li] = s + order[0]
    gcdf = np.empty(n)
    for li in range(n_leaves):
        s, e = leaf_start[li], leaf_end[li]
        c = np.cumsum(pop[s:e])
        gcdf[s:e] = li + c / c[-1]

    # Cold start and stock-outs: some items launch during the span, a few old ones sell out near its end.
    is_new = rng.random(n) < new_fraction
    is_new[staple] = False
    created = np.where(is_new, rng.uniform(0, max(span - 7 * DAY, 0), n), -rng.uniform(DAY, 730 * DAY, n))
    is_gone = ~is_new & (rng.random(n) < unavailable_fraction)
    is_gone[staple] = False
    gone = np.where(is_gone, span - rng.uniform(0, min(90 * DAY, span), n), np.inf)

    slots = np.full((n, 4), -1, dtype=np.int64)
    for k, slot in enumerate(SLOTS):
        for li, lf in enumerate(LEAVES):
            name = getattr(lf, slot)
            if name is None:
                continue
            pos = [a.name for a in lf.attrs].index(name)
            s, e = leaf_start[li], leaf_end[li]
            slots[s:e, k] = [codes_a[i][pos] for i in range(s, e)]

    related = _related(leaf, line, price, leaf_start, leaf_end)
    cap = CAPS[np.minimum(np.searchsorted(CAPS, price), len(CAPS) - 1)]
    ids = rng.permutation(n)
    width = max(5, len(str(n - 1)))
    item_ids = np.array([f"i{k:0{width}d}" for k in ids], dtype=object)
    queries, valid = _query_table(leaf, brand, model_a, codes_a, cap, rng)
    frame = _items_frame(leaf, brand, model_a, codes_a, price, created, gone, item_ids, rng, start=start, span=span)
    return Catalog(leaf=leaf, brand=brand, line=line, price=price, z=z, quality=quality, created=created, gone=gone,
                   slots=slots, related=related, gcdf=gcdf, leaf_start=leaf_start, leaf_end=leaf_end, staple=staple,
                   cap=cap, queries=queries, valid_pattern=valid, item_ids=item_ids, frame=frame)


def _attr_draw(name: str, n: int, rng: np.random.Generator) -> int:
    if name == "gender":  # women's, men's, unisex
        return int(rng.choice(3, p=[0.45, 0.42, 0.13]))
    return int(rng.integers(n))


def _related(leaf: np.ndarray, line: np.ndarray, price: np.ndarray, leaf_start: np.ndarray,
             leaf_end: np.ndarray) -> np.ndarray:
    """Per item: the other variants of its line first, then its nearest neighbours by price in the leaf."""
    n = len(leaf)
    order = np.lexsort((price, leaf))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    offsets = np.array([1, -1, 2, -2, 3, -3, 4, -4, 5, -5])
    lo, hi = leaf_start[leaf], leaf_end[leaf] - 1
    near = order[np.clip(pos[:, None] + offsets[None, :], lo[:, None], hi[:, None])]
    line_start = np.searchsorted(line, line, side="left")  # lines are contiguous in item order
    line_end = np.searchsorted(line, line, side="right")
    out = np.empty((n, N_RELATED), dtype=np.int64)
    for i in range(n):
        picks = [j for j in range(line_start[i], line_end[i]) if j != i][:3]
        for j in near[i]:
            if len(picks) == N_RELATED:
                break
            if j != i and j not in picks:
                picks.append(int(j))
        while len(picks) < N_RELATED:  # tiny leaves: repeat what there is (or the item itself)
            picks.append(picks[len(picks) % max(len(picks), 1)] if picks else i)
        out[i] = picks
    return out


def _query_table(leaf: np.ndarray, brand: np.ndarray, models: list[str], codes: list[np.ndarray],
                 cap: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The query each pattern makes for each item, lower-cased as people type; invalid where the leaf lacks
    the attribute (or the item is unisex for a gender query)."""
    n = len(leaf)
    out = np.empty((n, len(PATTERNS)), dtype=object)
    valid = np.ones((n, len(PATTERNS)), dtype=bool)
    for i in range(n):
        lf = LEAVES[leaf[i]]
        names = [a.name for a in lf.attrs]
        val = {a.name: a.values[codes[i][k]] for k, a in enumerate(lf.attrs)}
        noun, short, b = lf.noun.lower(), lf.short, BRANDS[brand[i]].name.lower()
        out[i, 0] = noun
        feat = val[lf.feature].lower() if lf.feature else ""
        out[i, 1] = feat if feat.endswith(noun.split()[-1]) else f"{feat} {noun}" if feat else noun  # no "knife knife"
        out[i, 2] = f"{b} {short}"
        out[i, 3] = f"{b} {short} under ${cap[i]}"
        if lf.spec:
            spec = _spec_text(val[lf.spec], rng)
            if spec.endswith(("skin", "hair", "phones")):
                out[i, 4] = f"{short} for {spec}"
            else:
                out[i, 4] = f"{short} {spec}" if rng.random() < 0.5 else f"{spec} {short}"
        else:
            out[i, 4] = noun
        out[i, 5] = f"{val['color']} {noun}" if "color" in names else noun
        g = val.get("gender")
        if g in ("women's", "men's"):
            bare = g.replace("'s", "")
            out[i, 6] = [f"{bare}s {noun}", f"{noun} for {bare}", f"{g} {noun}"][int(rng.integers(3))]
        else:
            out[i, 6] = noun
        out[i, 7] = f"{b} {models[i].lower()}"
        out[i, 8] = f"{short} under ${cap[i]}"
        valid[i, 1] = lf.feature is not None
        valid[i, 4] = lf.spec is not None
        valid[i, 5] = "color" in names
        valid[i, 6] = g in ("women's", "men's")
    return out, valid


def _items_frame(leaf: np.ndarray, brand: np.ndarray, models: list[str], codes: list[np.ndarray], price: np.ndarray,
                 created: np.ndarray, gone: np.ndarray, item_ids: np.ndarray, rng: np.random.Generator, *,
                 start: datetime, span: float) -> pl.DataFrame:
    titles, descs, attrs, brands = [], [], [], []
    for i in range(len(leaf)):
        lf = LEAVES[leaf[i]]
        br = BRANDS[brand[i]]
        val = {a.name: a.values[codes[i][k]] for k, a in enumerate(lf.attrs)}
        title = lf.template.format(brand=br.name, model=models[i], **val)
        picks = rng.choice(len(lf.blurbs), size=min(2, len(lf.blurbs)), replace=False)
        tier = "Premium" if br.tier > 1.2 else "Value" if br.tier < 0.8 else "Everyday"
        details = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in val.items())
        descs.append(f"{title}. {' '.join(lf.blurbs[j] for j in picks)} {tier} {lf.noun} from {br.name}. {details}.")
        titles.append(title)
        attrs.append(json.dumps(val, sort_keys=True, ensure_ascii=False))
        brands.append(br.name)
    start_us = int(start.timestamp() * 1_000_000)
    created_us = start_us + np.round(created).astype(np.int64) * 1_000_000  # whole seconds
    frame = pl.DataFrame({
        "item_id": pl.Series(item_ids.tolist(), dtype=pl.String),
        "title": titles,
        "description": descs,
        "brand": brands,
        "categories": pl.Series([list(lf.path) for lf in LEAVES], dtype=pl.List(pl.String)).gather(leaf),
        "price": price,
        "currency": "USD",
        "available": ~np.isfinite(gone) | (gone > span),
        "attributes": attrs,
        "created_at": pl.Series(created_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
    })
    return conform(frame, ITEM_SCHEMA).sort("item_id")
