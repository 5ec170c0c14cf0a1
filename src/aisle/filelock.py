"""One inter-process lock for files that several processes write: an flock on a lock file beside them.

Used by the DuckDB store (servers' writers, `aisle consume`, the worker and `aisle compact` share one file, and
DuckDB fails a second writing process instead of making it wait) and by the bundle registry (the worker and a
person running `aisle bundles` both move its `current` pointer)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(lock_path: str | Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created with its folder if missing) for the `with` block; a second
    holder, in this or another process, waits."""
    lock = Path(lock_path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
