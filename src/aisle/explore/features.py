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
        x = self.item_part(items, rate)
        self.shopper_part(history, items, x)
        return x

    def item_part(self, items: np.ndarray, rate: np.ndarray) -> np.ndarray:
        """The contexts without the shopper (bias, the item's rate, its price): what serving computes once per
        pool."""
        x = np.zeros((len(items), N_FEATURES))
        x[:, 0] = 1.0
        x[:, 1] = 10.0 * rate
        x[:, 6] = np.log1p(np.nan_to_num(self.attrs.price[items], nan=0.0)) / 5.0
        return x

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Per catalog row, computed once so that a request's shopper columns are a few array operations: its
        (leaf, brand) slots in one table of counts (the leaf codes, then the brand codes, an unknown code of
        either in a slot of its own that is kept at 0), those two slots, the table's size, and its (log price,
        has a price) pair."""
        a = self.attrs
        n_leaf = max(len(a.leaf_names), int(a.leaf.max(initial=-1)) + 1) + 1
        n_brand = max(len(a.brand_names), int(a.brand.max(initial=-1)) + 1) + 1
        slots = np.column_stack([a.leaf.astype(np.int64) + 1, a.brand.astype(np.int64) + 1 + n_leaf])
        price = np.column_stack([np.log1p(np.nan_to_num(a.price, nan=0.0)), ~np.isnan(a.price)])
        return slots, np.array([0, n_leaf]), n_leaf + n_brand, price

    def codes(self, items: np.ndarray) -> np.ndarray:
        """What `shopper_part` reads of `items` (their leaf and brand slots): serving computes it once for its
        pool, not per request."""
        return self._tables[0][items]

    def shopper_part(self, history: np.ndarray, items: np.ndarray, x: np.ndarray,
                     codes: np.ndarray | None = None) -> None:
        """Fill the shopper's columns of `x` (contexts of `items`, whose `codes` may be given): category and brand
        shares, price fit."""
        n = len(history)
        if not n:
            return
        slots, unknown, size, price = self._tables
        counts = np.bincount(slots[history].ravel(), minlength=size)  # the history's leaves and brands at once
        counts[unknown] = 0  # an unknown category or brand is no share
        x[:, 2:4] = counts[self.codes(items) if codes is None else codes] / n
        total, priced = np.add.reduce(price[history], axis=0)
        if priced:  # minus the distance to the mean log price of what the shopper looked at (unpriced left out)
            fit = x[:, 4]
            np.subtract(5.0 * x[:, 6], total / priced, out=fit)
            np.abs(fit, out=fit)
            np.negative(fit, out=fit)
        x[:, 5] = 1.0

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


__all__ = ["Featurizer"]
