"""Shared test helpers: where the real datasets live, and a skip when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

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
