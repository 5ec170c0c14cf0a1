"""LinUCB's context: what is known about a shopper and a cold item when the list is served.

Seven numbers per (shopper, item): a bias; the item's own observed reward rate (its Beta posterior mean, scaled);
the share of the shopper's stored history in the item's leaf category and in its brand; how far the item's price
is from the prices the shopper usually looks at (log scale, 0 = the same); whether the shopper has a history; and
the item's log price. The shopper side comes from the history stored in the bundle (not from the live session):
the worker that updates the model has the same bundle, so the features it learns from are exactly the ones the
server used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from aisle.explore.state import N_FEATURES, ExploreState
from aisle.rules import ItemAttributes


@dataclass(frozen=True)
class ItemContexts:
    """The contexts of a fixed set of items without a shopper (`Featurizer.items`): read-only."""

    base: np.ndarray  # (N_FEATURES, n): bias, rate, log price; the shopper's features 0
    known: np.ndarray  # the same with the has-a-history feature 1 (what `for_shopper` copies and fills)
    codes: np.ndarray  # (2, n): each item's leaf and brand slot in the shopper's count table
    log_price: np.ndarray  # (n,): 5 x the log price feature, what the price fit compares with the shopper's

    # Feature-major, (N_FEATURES, n): a request fills whole rows of it, contiguous, where the (n, N_FEATURES)
    # layout made numpy loop over pairs of values (a per-pair overhead, twice the work of the fill itself); its
    # transpose is the (n, N_FEATURES) contexts, which a matmul reads as they are.


@dataclass(frozen=True)
class Featurizer:
    attrs: ItemAttributes
    index: dict[str, int]  # item id -> row of `attrs`
    users: Any  # Vocab of the bundle's shoppers (ids -> index)
    histories: Any  # aisle.bundle.Histories or None
    state: ExploreState
    prior: tuple[float, float]

    def rate(self, item_ids: list[str]) -> np.ndarray:
        """Each item's posterior mean reward rate (the prior's for an item never shown)."""
        shown, rewards = self.state.counts(item_ids)
        a0, b0 = self.prior
        return (rewards + a0) / (np.maximum(shown, rewards) + a0 + b0)

    def history(self, user_id: str | None, before_us: int | None = None) -> np.ndarray:
        """The item rows of the shopper's stored history (before `before_us`, when given)."""
        user = self.users.index.get(user_id, -1) if user_id is not None else -1
        if user < 0 or self.histories is None:
            return np.zeros(0, np.int64)
        items, _types, times = self.histories.of(user)
        return items if before_us is None else items[times < before_us]

    def rows(self, history: np.ndarray, items: np.ndarray, rate: np.ndarray) -> np.ndarray:
        """(len(items), N_FEATURES) contexts of item rows `items` for one shopper with `history` (item rows)."""
        return self.for_shopper(history, self.items(items, rate))

    def items(self, items: np.ndarray, rate: np.ndarray) -> ItemContexts:
        """The contexts of item rows `items` (with `rate`, their observed rates) without a shopper: what serving
        computes once per pool, so that a request only fills in the shopper's columns (`for_shopper`)."""
        x = np.zeros((N_FEATURES, len(items)))
        x[0] = 1.0
        x[1] = 10.0 * rate
        x[6] = np.log1p(np.nan_to_num(self.attrs.price[items], nan=0.0)) / 5.0
        known = x.copy()
        known[5] = 1.0
        for array in (x, known):
            array.flags.writeable = False
        return ItemContexts(x, known, np.ascontiguousarray(self._tables[0][items].T), 5.0 * x[6])

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Per catalog row, computed once so that a request's shopper columns are a few array operations (each
        numpy call's overhead is far above its work on a 50-item history, so their number is the cost). The count
        table: the leaf codes, then the brand codes (an unknown code of either has a slot of its own, kept at 0),
        then a sink and a "priced" slot. Returned: each row's (leaf, brand) slots as an item reads them; each row's
        (leaf, brand, priced) slots as a history counts them (an unknown code and an unpriced item go to the sink,
        so the unknown slots stay 0 without clearing), one record per row; the table's size (the sink's slot); each
        row's log price (0 without a price)."""
        a = self.attrs
        n_leaf = max(len(a.leaf_names), int(a.leaf.max(initial=-1)) + 1) + 1
        n_brand = max(len(a.brand_names), int(a.brand.max(initial=-1)) + 1) + 1
        size = n_leaf + n_brand
        leaf, brand = a.leaf.astype(np.intp), a.brand.astype(np.intp)
        read = np.column_stack([leaf + 1, brand + 1 + n_leaf])
        counted = np.column_stack([np.where(leaf >= 0, leaf + 1, size), np.where(brand >= 0, brand + 1 + n_leaf, size),
                                   np.where(np.isnan(a.price), size, size + 1)])
        # one opaque 3-slot record per row: a 1-d gather of records is about half the cost of a 2-d gather of rows
        records = np.ascontiguousarray(counted).view(np.dtype((np.void, 3 * np.dtype(np.intp).itemsize))).ravel()
        return read, records, size, np.log1p(np.nan_to_num(a.price, nan=0.0))

    def for_shopper(self, history: np.ndarray, items: ItemContexts) -> np.ndarray:
        """The (len(items), N_FEATURES) contexts of `items` for a shopper with `history` (item rows): category and
        brand shares, price fit, has a history (a transposed view; read-only without a history)."""
        n = len(history)
        if not n:
            return items.base.T
        _read, counted, size, log_price = self._tables
        # the history's leaves, brands and priced items in one count
        counts = np.bincount(counted[history].view(np.intp), minlength=size + 2)
        x = items.known.copy()
        x[2:4] = (counts / n)[items.codes]  # the shares of the history in each item's category and brand
        priced = counts[size + 1]
        if priced:  # minus the distance to the mean log price of what the shopper looked at (unpriced left out)
            total = np.add.accumulate(log_price[history])[-1]  # summed in order, as it always was
            fit = x[4]
            np.subtract(items.log_price, total / priced, out=fit)
            np.abs(fit, out=fit)
            np.negative(fit, out=fit)
        return x.T

    def __call__(self, user_ids: list[str | None], item_ids: list[str], timestamps: pl.Series) -> np.ndarray:
        """Contexts of logged impressions (the `aisle.explore.state.Context` the update needs): each shopper's
        stored history before the impression's time."""
        out = np.zeros((len(item_ids), N_FEATURES))
        rows = np.fromiter((self.index.get(i, -1) for i in item_ids), np.int64, len(item_ids))
        rate = self.rate(item_ids)
        times = timestamps.dt.epoch("us").to_numpy()
        groups: dict[tuple[str | None, int], list[int]] = {}
        for n, (user, t) in enumerate(zip(user_ids, times.tolist(), strict=True)):
            groups.setdefault((user, int(t)), []).append(n)
        for (user, t), members in groups.items():
            at = np.asarray(members, np.int64)
            ok = at[rows[at] >= 0]
            if len(ok):
                out[ok] = self.rows(self.history(user, t), rows[ok], rate[ok])
            out[at[rows[at] < 0], 0] = 1.0
        return out


__all__ = ["Featurizer", "ItemContexts"]
