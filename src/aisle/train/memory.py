"""Keep freed memory in the process while a model trains on CPU.

A training step over a large catalog allocates buffers far above glibc's largest mmap threshold (the full-softmax
logits of one SASRec step on Amazon Sports are ~470 MB), so by default every step maps fresh pages, the kernel
zeroes them on first touch and the step unmaps them again: on Sports a third of a fit's CPU time was the kernel's
(RESULTS.md, "Sports with the deep source"). Serving the large blocks from the heap and not trimming it while
training removes that work; the results are the same, bit for bit, and the process keeps its peak memory for the
duration of the fit. Afterwards the settings go back to what glibc's adaptive thresholds converge to after such
blocks, and what is free is returned to the system.

Only where glibc is the allocator and the user has not set it up: with `MALLOC_MMAP_MAX_`, `MALLOC_TRIM_THRESHOLD_`,
`MALLOC_MMAP_THRESHOLD_` or a preloaded allocator (jemalloc, tcmalloc) in the environment nothing is changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
from collections.abc import Iterator

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MMAP_MAX_DEFAULT = 65536  # glibc's DEFAULT_MMAP_MAX
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its adaptation stops
_TRIM_KEPT = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap top is kept, more than a step frees at once
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "LD_PRELOAD")

_lock = threading.Lock()
_depth = 0


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if any(os.environ.get(name) for name in _USER_SETTINGS):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def kept_freed_memory() -> Iterator[bool]:
    """Within the block, large allocations come from the heap and freed memory stays in the process; yields
    whether the setting applies here. Nested or concurrent blocks share one setting, restored when the last ends."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_KEPT)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)
                libc.mallopt(_M_MMAP_MAX, _MMAP_MAX_DEFAULT)
                libc.malloc_trim(0)
