"""Shared test helpers: where the real datasets live, and a skip when they are absent; a small synthetic store
that the pipeline's tests fit on."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from aisle.models.base import TrainData

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_path(relative: str) -> Path:
    """Path of a real dataset file under ../shared/data; skips the test with a clear reason when absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real dataset {path} is absent (../shared/data is only beside the repo in CI and dev)")
    return path


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@functools.cache
def small_store() -> TrainData:
    """A synthetic store of 300 items, 150 users and 8,000 events with its catalog, as training data: enough for a
    pipeline to fit in seconds (built once per test process; TrainData is not changed by what fits on it)."""
    from aisle.data.synthetic import SyntheticConfig, generate
    from aisle.evaluate.protocol import item_vocab
    from aisle.models.base import TrainData

    s = generate(SyntheticConfig(n_items=300, n_users=150, n_events=8_000, seed=5))
    return TrainData.from_events(s.events, items=item_vocab(s.events, s.items), catalog=s.items)
