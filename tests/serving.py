"""Helpers for tests (and benchmarks) that run `aisle serve`, `aisle worker` and friends as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


def clients_per_worker(url: str, workers: int, *, seconds: float = 90.0, **kwargs: object) -> dict[int, httpx.Client]:
    """One keep-alive client per worker process of `aisle serve --workers N`, keyed by the worker's pid.

    Why: the workers share one listening socket and the kernel picks which accepts a connection; a connection then
    stays with that worker, so opening connections until `/health` has answered from every pid gives a client
    that reaches each worker on purpose (`worker_pid` tells whether it still does). Tried until `seconds` pass, not
    a count of times: `/ready` answers as soon as one worker is up, and on a busy machine another may still be
    loading its bundle (or the kernel may hand a run of connections to the same one)."""
    found: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + seconds
    tries = 0
    while len(found) < workers and time.monotonic() < deadline:
        client = httpx.Client(base_url=url, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                              **kwargs)  # type: ignore[arg-type]
        pid, tries = worker_pid(client), tries + 1
        if pid in found:
            client.close()
            time.sleep(0.05 if tries > 100 else 0)
        else:
            found[pid] = client
    if len(found) < workers:
        raise AssertionError(f"reached {len(found)} of {workers} workers in {tries} connections over {seconds:.0f} s")
    return found


def worker_pid(client: httpx.Client) -> int:
    """The pid of the worker process behind `client`'s connection (`/health`)."""
    r = client.get("/health")
    r.raise_for_status()
    return int(r.json()["pid"])


@contextlib.contextmanager
def aisle_process(args: list[str], log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m aisle ARGS` in its own process group (its uvicorn workers too), output appended to `log`, this
    interpreter's import path and `env` in its environment; stopped with SIGTERM (SIGKILL after 20 s) on exit."""
    proc = subprocess.Popen([sys.executable, "-m", "aisle", *args], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
                                 **env}, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
