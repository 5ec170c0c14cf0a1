"""Stopping a long-running process (the stream consumers, `aisle worker`) cleanly on SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGINT or SIGTERM. Not from the handler itself: Python runs a handler in the main thread between
    two bytecodes, possibly while that thread holds the Event's internal lock inside `stop.wait()`, and `stop.set()`
    there would wait on that lock forever. A short thread sets it once the main thread lets go."""
    def handler(*_: object) -> None:
        threading.Thread(target=stop.set, name="aisle-stop", daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
