"""The synthetic store split in time that the search-log tests learn from (tests/integration/test_search_*.py):
`aisle train` reads the first 80% of its events from `root/shop`, and the rest, `root/held_out.parquet`, are the
later searches (with the clicks and purchases that judge them) the trained search is scored on."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from aisle.data.synthetic import SyntheticConfig, generate

SOURCES = [{"key": "itemknn", "model": "itemknn", "kind": "i2i", "decay": 0.7},
           {"key": "trending", "model": "trending", "kind": "trending"}]


def write_time_split_shop(root: Path) -> None:
    s = generate(SyntheticConfig(n_items=300, n_users=150, n_events=9_000, seed=3))
    cut = s.events["timestamp"].sort()[int(s.events.height * 0.8)]
    (root / "shop").mkdir()
    s.items.write_parquet(root / "shop" / "items.parquet")
    s.users.write_parquet(root / "shop" / "users.parquet")
    s.events.filter(pl.col("timestamp") < cut).write_parquet(root / "shop" / "events.parquet")
    s.events.filter(pl.col("timestamp") >= cut).write_parquet(root / "held_out.parquet")
