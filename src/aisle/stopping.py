"""Stopping a long-running process (the stream consumers, `aisle worker`, `aisle serve`) cleanly on SIGINT or
SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGINT or SIGTERM. Not from the handler itself: Python runs a handler in the main thread between
    two bytecodes, possibly while that thread holds the Event's internal lock inside `stop.wait()`, and `stop.set()`
    there would wait on that lock forever. A short thread sets it once the main thread lets go."""
    def handler(*_: object) -> None:
        threading.Thread(target=stop.set, name="aisle-stop", daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


@contextlib.contextmanager
def sigterm_raises_exit() -> Iterator[None]:
    """Within: SIGTERM raises SystemExit(143) in the main thread, so the caller's `finally` runs. Why: uvicorn handles
    SIGTERM itself, shuts down gracefully, then puts back the handler it found and raises the signal again; with
    the default handler the process would end right there, skipping `aisle serve`'s cleanup (its private settings
    folder, API keys included) on exactly the signal `docker stop` and Kubernetes send."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
