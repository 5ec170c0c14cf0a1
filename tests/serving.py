"""Helpers for tests that run `aisle serve` as a real process."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_ready(url: str, proc: subprocess.Popen, *, seconds: float = 120.0,
               output: Callable[[], str] | None = None) -> None:
    """Return once `url`/ready answers 200; fail with the server's output when it exits or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            said = output() if output is not None else ""
            raise AssertionError(f"aisle serve did not become ready (exit code {proc.poll()}):\n{said[-3000:]}")
        time.sleep(0.3)
