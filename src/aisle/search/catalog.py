"""The catalog as search needs it: per-field texts for the indexes and structured columns for filters and facets.

Why numpy columns and not a query engine: a search filters and counts facets over the whole matching set on every
request, and with tens of thousands of items that is a few boolean masks and `np.bincount`s (microseconds), with
no per-request conversion. Strings are dictionary-encoded once (brand, category, each attribute's values); a
category filter matches any level of an item's path ("Lighting" matches "Lighting > Ceiling Fans").

Brands: a catalog without a brand column (Home Depot's file has titles only) gets brands inferred from titles: a
title prefix of one to three words that starts at least `min_items` titles and rarely occurs anywhere else in a
title ("BEHR Premium", "Hampton Bay", "Delta"). Inferred brands serve query understanding and facets; they are
marked `brand_inferred` in the saved metadata.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from aisle.overlay import Column
from aisle.search.text import fold, normalize, words

FIELDS = ("title", "brand", "category", "attributes", "description")


class _Tail:
    """Spare room after an array that copies of it can grow into without copying it (catalog upserts append rows
    to dozens of 100,000-row columns each time). Only the newest version may grow in place: it is the one whose
    length is the buffer's `used`; any other (an older copy someone still reads) copies instead, so no reader ever
    sees its rows change."""

    def __init__(self) -> None:
        self.data: np.ndarray | None = None
        self.used = 0
        self.lock = threading.Lock()

    @staticmethod
    def extend(view: np.ndarray, tail: np.ndarray, owner: _Tail | None) -> tuple[np.ndarray, _Tail]:
        """`np.concatenate([view, tail])`, in `owner`'s spare room when `view` is its newest version."""
        n, m = len(view), len(tail)
        if owner is not None:
            with owner.lock:
                data = owner.data
                if data is not None and owner.used == n and n + m <= len(data) and \
                        np.shares_memory(view[:1], data[:1]) and view.ctypes.data == data.ctypes.data:
                    data[n:n + m] = tail
                    owner.used = n + m
                    return data[:n + m], owner
        fresh = _Tail()
        fresh.data = np.empty(n + m + max(1024, (n + m) // 50), view.dtype)
        fresh.data[:n], fresh.data[n:n + m] = view, tail
        fresh.used = n + m
        return fresh.data[:n + m], fresh


@dataclass
class Codes:
    """A dictionary-encoded multi-valued column: item i has values[indices[indptr[i]:indptr[i+1]]]."""

    values: list[str]
    indptr: np.ndarray
    indices: np.ndarray
    _folded: dict[str, list[int]] | None = field(default=None, init=False, repr=False, compare=False)
    _postings: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)
    _tails: tuple[_Tail | None, _Tail | None] = field(default=(None, None), init=False, repr=False, compare=False)

    @classmethod
    def build(cls, rows: list[list[str]]) -> Codes:
        lookup: dict[str, int] = {}
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        flat: list[int] = []
        for i, vals in enumerate(rows):
            for v in dict.fromkeys(vals):
                flat.append(lookup.setdefault(v, len(lookup)))
            indptr[i + 1] = len(flat)
        return cls(list(lookup), indptr, np.asarray(flat, dtype=np.int32))

    def codes_of(self, wanted: list[str]) -> np.ndarray:
        """Codes of the values equal to any of `wanted`, ignoring case and accents."""
        if self._folded is None:
            self._folded = {}
            for i, v in enumerate(self.values):
                self._folded.setdefault(fold(v), []).append(i)
        folded = self._folded
        return np.array([c for w in wanted for c in folded.get(fold(w), ())], dtype=np.int32)

    def postings(self) -> tuple[np.ndarray, np.ndarray]:
        """The transpose, built on first use: value c is held by items `rows[starts[c]:starts[c + 1]]`.

        Why: a filter then touches only the items that have the value, not every item's values (an `isin` over
        the whole column cost ~1 ms per filter on a 100,000-item catalog, on every filtered search)."""
        if self._postings is None:
            owner = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))
            order = np.argsort(self.indices, kind="stable")
            starts = np.searchsorted(self.indices[order], np.arange(len(self.values) + 1))
            self._postings = (owner[order], starts)
        return self._postings

    def mask(self, wanted: list[str], n: int) -> np.ndarray:
        """Items having any of `wanted` (case-insensitive)."""
        out = np.zeros(n, dtype=bool)
        codes = self.codes_of(wanted)
        if len(codes) == 0 or len(self.indices) == 0:
            return out
        rows, starts = self.postings()
        for c in codes:
            out[rows[starts[c]:starts[c + 1]]] = True
        return out

    def has_any(self, wanted: list[str], rows: np.ndarray) -> np.ndarray:
        """For the items `rows` only: whether each has any of `wanted` (cheaper than `mask` for a few rows)."""
        codes = self.codes_of(wanted)
        out = np.zeros(len(rows), dtype=bool)
        if len(codes) == 0 or len(rows) == 0:
            return out
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        flat = self.indices[np.repeat(starts, lengths) + _ragged_arange(lengths)]
        hit = np.isin(flat, codes)
        owner = np.repeat(np.arange(len(rows)), lengths)
        out[owner[hit]] = True
        return out

    def rows_values(self, rows: np.ndarray) -> list[list[str]]:
        return [[self.values[c] for c in self.indices[self.indptr[r]:self.indptr[r + 1]]] for r in rows]

    def counts(self, rows: np.ndarray) -> Counter[str]:
        """Value counts over the items `rows` (each item counted once per value)."""
        if len(rows) == 0 or len(self.indices) == 0:
            return Counter()
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        idx = self.indices[np.repeat(starts, ends - starts) + _ragged_arange(ends - starts)]
        c = np.bincount(idx, minlength=len(self.values))
        return Counter({self.values[i]: int(c[i]) for i in np.flatnonzero(c)})

    def with_rows(self, rows: list[int], values: list[list[str]], n: int) -> Codes:
        """A copy over `n` items in which items `rows` (existing, or new ones past the current count) hold
        `values`; new values get new codes at the end. Costs a few array copies, not a rebuild."""
        lookup = {v: i for i, v in enumerate(self.values)} if any(values) else {}
        names = self.values  # copied before the first new value (most upserts bring none)
        old_n = len(self.indptr) - 1
        new_codes: dict[int, list[int]] = {}
        for row, vals in zip(rows, values, strict=True):
            codes = []
            for v in dict.fromkeys(vals):
                if v not in lookup:
                    if names is self.values:
                        names = list(self.values)
                    lookup[v] = len(names)
                    names.append(v)
                codes.append(lookup[v])
            new_codes[int(row)] = codes
        changed = {r: c for r, c in new_codes.items() if r < old_n}
        added = [new_codes.get(r, []) for r in range(old_n, n)]
        if all(len(c) == self.indptr[r + 1] - self.indptr[r] for r, c in changed.items()):
            # the common case (a changed item has as many values as before): no row moves
            indices = self.indices
            if any(changed.values()):
                indices = indices.copy()
                for r, c in changed.items():
                    indices[self.indptr[r]:self.indptr[r + 1]] = c
            lengths = np.fromiter((len(c) for c in added), np.int64, len(added))
            flat = np.fromiter((x for c in added for x in c), np.int32, int(lengths.sum()))
            indptr, ptr_tail = _Tail.extend(self.indptr, self.indptr[-1] + np.cumsum(lengths), self._tails[0])
            idx_tail = self._tails[1] if indices is self.indices else None
            if len(flat):
                indices, idx_tail = _Tail.extend(indices, flat, idx_tail)
            out = Codes(names, indptr, indices)
            out._tails = (ptr_tail, idx_tail)
            return out
        lengths = np.zeros(n, np.int64)
        lengths[:old_n] = np.diff(self.indptr)
        for row, codes in new_codes.items():
            lengths[row] = len(codes)
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        pieces, start = [], 0
        for row in sorted(new_codes):
            if row < old_n:
                pieces.append(self.indices[self.indptr[start]:self.indptr[row]])
                start = row + 1
            else:
                pieces.append(self.indices[self.indptr[start]:self.indptr[old_n]])
                start = old_n
            pieces.append(np.asarray(new_codes[row], np.int32))
        pieces.append(self.indices[self.indptr[min(start, old_n)]:self.indptr[old_n]])
        return Codes(names, indptr, np.concatenate(pieces).astype(np.int32, copy=False))

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "indptr": self.indptr.tolist(), "indices": self.indices.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Codes:
        return cls(d["values"], np.asarray(d["indptr"], dtype=np.int64), np.asarray(d["indices"], dtype=np.int32))


def _ragged_arange(lengths: np.ndarray) -> np.ndarray:
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total) - offsets


def infer_brands(titles: list[str], *, min_items: int = 5, max_words: int = 3) -> list[str | None]:
    """A brand per title from frequent title prefixes that seldom appear mid-title (see module docstring).

    A first word is a brand when at least `min_items` titles start with it, it is capitalised and not a number,
    and it occurs inside other titles at most a quarter as often. The brand then grows word by word while the
    longer prefix still covers 80% of its titles ("Hampton" -> "Hampton Bay"), never into a number.
    """
    split = [t.split() for t in titles]
    first: Counter[str] = Counter()
    inner: Counter[str] = Counter()
    for ws in split:
        if ws:
            first[fold(ws[0])] += 1
            inner.update(fold(w) for w in ws[1:])
    starts: dict[str, int] = Counter(" ".join(ws[:k]) for ws in split for k in range(1, min(max_words, len(ws)) + 1))
    out: list[str | None] = []
    for ws in split:
        if not ws or not ws[0][:1].isupper() or not ws[0][0].isalpha():
            out.append(None)
            continue
        w0 = fold(ws[0])
        if first[w0] < min_items or inner[w0] > 0.25 * first[w0]:
            out.append(None)
            continue
        k = 1
        while k < min(max_words, len(ws)) and not ws[k][0].isdigit() and \
                starts.get(" ".join(ws[:k + 1]), 0) >= 0.8 * starts[" ".join(ws[:k])]:
            k += 1
        out.append(" ".join(ws[:k]))
    return out


@dataclass
class Catalog:
    """Item ids, field texts and structured columns of one catalog, aligned by row."""

    item_ids: Column[str]  # overlay columns (aisle.overlay): an upsert copies the rows it changes, not the column
    texts: dict[str, Column[str]]
    price: np.ndarray
    available: np.ndarray
    brand: Codes
    category: Codes
    attributes: dict[str, Codes]
    leaf_category: Codes
    brand_inferred: bool = False
    popularity: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_items(cls, items: pl.DataFrame, *, popularity: dict[str, float] | None = None,
                   infer_brand: bool = True) -> Catalog:
        cols = set(items.columns)

        def col(name: str) -> list[Any]:
            return items[name].to_list() if name in cols else [None] * items.height

        ids = [str(x) for x in items["item_id"].to_list()]
        titles = [t or "" for t in col("title")]
        brands = [b.strip() if isinstance(b, str) and b.strip() else None for b in col("brand")]
        inferred = False
        if infer_brand and not any(brands):
            brands, inferred = infer_brands(titles), True
        cats = [list(c) if c else [] for c in col("categories")]
        attrs: list[dict[str, Any]] = []
        for a in col("attributes"):
            try:
                d = json.loads(a) if isinstance(a, str) and a else {}
            except json.JSONDecodeError:
                d = {}
            attrs.append(d if isinstance(d, dict) else {})
        keys = sorted({k for d in attrs for k, v in d.items() if isinstance(v, str | int | float | list)})
        attr_codes = {}
        for k in keys:
            rows = []
            for d in attrs:
                v = d.get(k)
                vals = v if isinstance(v, list) else [] if v is None else [v]
                rows.append([str(x) for x in vals if isinstance(x, str | int | float)])
            attr_codes[k] = Codes.build(rows)
        attr_text = [" ".join(f"{v}" for v in d.values() if isinstance(v, str | int | float)) for d in attrs]
        prices = np.array([np.nan if p is None else float(p) for p in col("price")], dtype=np.float64)
        avail = np.array([True if a is None else bool(a) for a in col("available")], dtype=bool)
        pop = np.zeros(len(ids), dtype=np.float32)
        if popularity:
            pop = np.array([popularity.get(i, 0.0) for i in ids], dtype=np.float32)
        return cls(
            item_ids=Column(ids),
            texts={
                "title": Column(titles),
                "brand": Column([b or "" for b in brands]),
                "category": Column([" ".join(c) for c in cats]),
                "attributes": Column(attr_text),
                "description": Column([d or "" for d in col("description")]),
            },
            price=prices,
            available=avail,
            brand=Codes.build([[b] if b else [] for b in brands]),
            category=Codes.build(cats),
            leaf_category=Codes.build([[c[-1]] if c else [] for c in cats]),
            attributes=attr_codes,
            brand_inferred=inferred,
            popularity=pop,
        )

    def with_items(self, rows: list[int], items: Catalog) -> Catalog:
        """A copy in which items `rows` (existing rows, or new ones appended in order) are those of `items` (a
        catalog of just the upserted items, aligned with `rows`). Popularity stays as it was (a new item has
        none yet: the scale the reranker learned stays the same)."""
        n = max(len(self), max(rows, default=-1) + 1)
        grow = n - len(self)
        # id and text columns as overlays (aisle.overlay): only the changed rows are copied, not 100,000 strings
        item_ids = self.item_ids.with_values(rows, items.item_ids, "")
        texts = {k: v.with_values(rows, items.texts[k], "") for k, v in self.texts.items()}
        price = np.concatenate([self.price, np.full(grow, np.nan)])
        available = np.concatenate([self.available, np.ones(grow, bool)])
        price[rows], available[rows] = items.price, items.available

        def values(codes: Codes) -> list[list[str]]:
            return codes.rows_values(np.arange(len(rows)))

        attributes = {}
        for key in {*self.attributes, *items.attributes}:
            mine = self.attributes.get(key) or Codes([], np.zeros(len(self) + 1, np.int64), np.zeros(0, np.int32))
            theirs = values(items.attributes[key]) if key in items.attributes else [[] for _ in rows]
            attributes[key] = mine.with_rows(rows, theirs, n)
        return Catalog(
            item_ids=item_ids, texts=texts, price=price, available=available,
            brand=self.brand.with_rows(rows, values(items.brand), n),
            category=self.category.with_rows(rows, values(items.category), n),
            leaf_category=self.leaf_category.with_rows(rows, values(items.leaf_category), n),
            attributes=attributes, brand_inferred=self.brand_inferred,
            popularity=np.concatenate([self.popularity, np.zeros(grow, np.float32)]))

    def embedding_text(self, i: int) -> str:
        """What the dense index embeds for item i: the title, with the brand and leaf category when not in it."""
        title = self.texts["title"][i]
        extra = []
        brand = self.texts["brand"][i]
        if brand and not self.brand_inferred and fold(brand) not in fold(title):
            extra.append(brand)
        leaf = self.leaf_category.values[self.leaf_category.indices[self.leaf_category.indptr[i]]] \
            if self.leaf_category.indptr[i + 1] > self.leaf_category.indptr[i] else ""
        if leaf and fold(leaf) not in fold(title):
            extra.append(leaf)
        return " | ".join([title, *extra]) if extra else title

    def vocabulary_docs(self) -> Iterator[list[str]]:
        """Per item, the surface words of its title, brand and categories: the spelling vocabulary's source."""
        t = self.texts
        for title, brand, cat in zip(t["title"], t["brand"], t["category"], strict=True):
            yield words(normalize(f"{title} {brand} {cat}"))

    def normalized_values(self) -> dict[str, dict[str, str]]:
        """Normalised value -> original value, per structured field (brand, category, attribute keys)."""
        out: dict[str, dict[str, str]] = {
            "brand": {normalize(v): v for v in self.brand.values},
            "category": {normalize(v): v for v in self.category.values},
        }
        for k, codes in self.attributes.items():
            out[f"attr:{k}"] = {normalize(v): v for v in codes.values if len(v) <= 40}
        return out

    # ---- persistence (JSON + npy) ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "item_ids": list(self.item_ids), "texts": {k: list(v) for k, v in self.texts.items()},
            "brand": self.brand.to_json(),
            "category": self.category.to_json(), "leaf_category": self.leaf_category.to_json(),
            "attributes": {k: v.to_json() for k, v in self.attributes.items()}, "brand_inferred": self.brand_inferred,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {"price": self.price, "available": self.available, "popularity": self.popularity}

    @classmethod
    def from_saved(cls, d: dict[str, Any], arrays: dict[str, np.ndarray]) -> Catalog:
        return cls(
            item_ids=Column(d["item_ids"]), texts={k: Column(v) for k, v in d["texts"].items()},
            price=arrays["price"], available=arrays["available"],
            brand=Codes.from_json(d["brand"]), category=Codes.from_json(d["category"]),
            leaf_category=Codes.from_json(d["leaf_category"]),
            attributes={k: Codes.from_json(v) for k, v in d["attributes"].items()},
            brand_inferred=d["brand_inferred"], popularity=arrays["popularity"],
        )
