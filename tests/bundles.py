"""Small real serving bundles for the API tests: a synthetic shop and the bundle `aisle train` would save from it.

Why one place: a dozen API tests built the same two fixtures by hand (generate a shop, build and save a bundle with
the data fingerprint and metrics that `aisle serve` checks); a change to what a saved bundle needs is made here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aisle.bundle import build_serving_bundle, fingerprint
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.pipeline import PipelineConfig, SourceSpec


def synthetic_shop(config: SyntheticConfig) -> Dataset:
    """The synthetic store of `config` as a Dataset named "shop"."""
    s = generate(config)
    return Dataset(name="shop", items=s.items, users=s.users, events=s.events)


def save_bundle(shop: Dataset, sources: Sequence[SourceSpec], out: Path, *, rounds: int = 20,
                search: bool = True) -> Path:
    """Build the serving bundle of `sources` over `shop` (no dense vectors: tests stay fast) and save it to `out`."""
    b = build_serving_bundle(shop, PipelineConfig(sources=tuple(sources), rounds=rounds), dense=False, search=search)
    b.save(out, data_fingerprint=fingerprint(shop.events), metrics=b.manifest["metrics"])
    return out
