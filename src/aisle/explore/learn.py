"""One update of the exploration state from new impressions and events: the same function for `aisle worker` (from
the store, into the next bundle version) and for the simulator (between its refreshes), so what a simulation
measures is what a fleet runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from aisle.config import ExploreConfig
from aisle.explore.features import Featurizer
from aisle.explore.policy import pool_rows
from aisle.explore.state import ExploreState
from aisle.rules import ItemAttributes


def cold_pool(cfg: ExploreConfig, state: ExploreState, counts: np.ndarray, attrs: ItemAttributes,
              item_ids: list[str], index: Mapping[str, int]) -> np.ndarray:
    """The rows exploration may show now (`aisle.explore.policy.pool_rows` with the state's impressions; `index`
    maps item ids to rows)."""
    n = len(item_ids)
    full = np.zeros(n)
    full[: min(n, len(counts))] = counts[:n]
    available = attrs.available[:n]
    rows = np.fromiter((index.get(i, -1) for i in state.item_ids), np.int64, len(state.item_ids))
    known = (rows >= 0) & (rows < n)
    shown = np.zeros(n)
    shown[rows[known]] = state.shown[known]
    tracked = rows[known]
    return pool_rows(cfg, full, available, shown, tracked)


def learn(state: ExploreState, impressions: pl.DataFrame, events: pl.DataFrame, *, cfg: ExploreConfig,
          attrs: ItemAttributes, item_ids: list[str], counts: np.ndarray, users: Any, histories: Any
          ) -> ExploreState:
    """`state` after `impressions` and `events` (both new since the last update), for a catalog whose item rows
    are `item_ids` (with their `attrs` and bundle event `counts`) and whose shoppers' stored histories are
    `histories` (indexed by `users`)."""
    index = {i: n for n, i in enumerate(item_ids)}
    features = Featurizer(attrs, index, users, histories, state, (cfg.prior_clicks, cfg.prior_misses))
    pool = cold_pool(cfg, state, counts, attrs, item_ids, index)
    return state.update(impressions, events, context=features, cold=[item_ids[r] for r in pool.tolist()],
                        reward=cfg.reward, attribution_seconds=cfg.attribution_seconds)


__all__ = ["cold_pool", "learn"]
