"""One faiss thread in these tests: OpenMP over 2 shared cores made index builds 7x slower (spin-waiting)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aisle.index import faiss_threads


@pytest.fixture(autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    with faiss_threads(1):
        yield
