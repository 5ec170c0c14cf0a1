"""Where the stream consumers (Redis streams -> store) run: threads of one process, and the process `aisle serve`
starts and supervises beside its API workers.

Why a process of their own: a consumer turns JSON into polars frames and writes them into DuckDB or PostgreSQL,
holding the GIL for milliseconds at a time. Inside an API worker that time is taken from the requests (the load
benchmark's tail with a store attached); in a separate process the kernel schedules it like any other process and
the request threads never wait on it. `aisle serve` with Redis state, a store and `consume = true` (the default)
starts one such process (`python -m aisle.serve.consumers SETTINGS_FILE`, the file the workers read), restarts
it when it dies (a `kill -9` loses nothing: its unacknowledged entries are claimed again after
`stream_claim_idle_s`), and stops it after the workers, so their last impressions reach it. The child asks the kernel
for SIGTERM when its parent dies (Linux), so a killed server leaves no consumer behind. An app built by
`create_app` without `aisle serve` (tests, embedding) runs the same consumers as threads of its own process
(`Services.start_consumer`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aisle.stopping import stop_on_signals

log = logging.getLogger("aisle.serve")

#: The server's pid, given to its consumer process: a process that starts slowly (seconds of imports on a busy
#: machine) may only look at its parent after the server died, when `os.getppid()` already names another process.
PARENT_ENV = "AISLE_CONSUMER_PARENT"

def streams_of(settings: Any) -> tuple[str, ...]:
    """The streams to consume: the events, and the impressions where the workers log them."""
    return ("events", "impressions") if settings.impressions else ("events",)


def start(settings: Any, store: Callable[[], Any], stop: threading.Event, *, name: str | None = None,
          streams: tuple[str, ...] | None = None) -> list[tuple[Any, threading.Thread]]:
    """One consumer thread per stream, running until `stop` is set; `store` is `StoreSink.locked`."""
    from aisle.serve.stream import Consumer

    out = []
    for stream in streams or streams_of(settings):
        consumer = Consumer(settings.state, store, claim_idle_s=settings.stream_claim_idle_s, stream=stream,
                            name=f"{name}-{stream}" if name else None,
                            pace_s=settings.impressions_store_s if stream == "impressions" else settings.events_store_s,
                            count=1_000)
        thread = threading.Thread(target=consumer.run, args=(stop,), name=f"aisle-{stream}-consumer", daemon=True)
        thread.start()
        out.append((consumer, thread))
    return out


def stop_all(running: list[tuple[Any, threading.Thread]], stop: threading.Event) -> None:
    stop.set()
    for _, thread in running:
        thread.join(timeout=15)
    for consumer, _ in running:
        consumer.close()


def _die_with_parent() -> None:
    """SIGTERM this process when the parent (`aisle serve`) dies, however it dies (Linux prctl; elsewhere the
    consumer outlives a killed server, which loses nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return


def main(settings_file: str, streams: tuple[str, ...] | None = None) -> None:
    """The consumer process: the settings from the file `aisle serve` wrote; runs until SIGTERM or SIGINT.
    `streams`: which streams this process consumes (default: `streams_of(settings)`)."""
    from aisle.config import Settings
    from aisle.serve.sink import StoreSink

    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    _die_with_parent()
    if os.getppid() != parent:  # the server died before the request above (while we started): nobody will stop us
        return
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.model_validate_json(Path(settings_file).read_text(encoding="utf-8"))
    stop = threading.Event()
    stop_on_signals(stop)
    # beside the API workers: yield the CPU to their requests (`consumer_nice`), and never take every core at once
    # (DuckDB's default is a thread per core: each store write took both cores from the workers for tens of ms)
    os.nice(settings.consumer_nice)
    sink = StoreSink(settings.store, threads=1)  # type: ignore[arg-type]
    running = start(settings, sink.locked, stop, streams=streams)
    try:
        while not stop.wait(1.0):
            if not any(t.is_alive() for _, t in running) or os.getppid() != parent:  # the parent gone: belt and braces
                break
    finally:
        stop_all(running, stop)
        sink.close()


class ConsumerProcess:
    """`aisle serve`'s consumer process: started before the workers, restarted when it exits (after a pause that
    grows to 30 s while it keeps failing), stopped (SIGTERM, then SIGKILL after `grace_s`) by `stop`. `streams`:
    the streams it consumes (default: the events, and the impressions where the workers log them)."""

    def __init__(self, settings_file: Path, *, streams: tuple[str, ...] | None = None, grace_s: float = 20.0
                 ) -> None:
        self.settings_file = settings_file
        self.streams = streams
        self.grace_s = grace_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="aisle-consumer-supervisor", daemon=True)

    def start(self) -> ConsumerProcess:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            if not self._stop.is_set():
                args = [str(self.settings_file), *([",".join(self.streams)] if self.streams else [])]
                self.proc = subprocess.Popen([sys.executable, "-m", "aisle.serve.consumers", *args],
                                             env={**os.environ, PARENT_ENV: str(os.getpid())})

    def _supervise(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            proc = self.proc
            if proc is None:
                return
            started = time.monotonic()
            code = proc.wait()
            if self._stop.is_set():
                return
            pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 30.0)
            log.warning("the stream consumer process (pid %d) exited with %s; starting another in %.0f s",
                        proc.pid, code, pause)
            if self._stop.wait(pause):
                return
            self.restarts += 1
            self._spawn()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            log.warning("the stream consumer process (pid %d) did not stop in %.0f s: killed (its unacknowledged "
                        "entries are claimed by the next consumer)", proc.pid, self.grace_s)
            proc.kill()
            proc.wait(timeout=10)


__all__ = ["ConsumerProcess", "main", "processes", "start", "stop_all", "streams_of"]


def processes(settings: Any, settings_file: Path) -> list[ConsumerProcess]:
    """The consumer processes `aisle serve` runs (not started): `settings.consumers` of them share the event
    stream's group (a PostgreSQL store takes their writes in parallel; a DuckDB file takes them in turn, so there
    more than one only helps while the JSON-to-frame work, not the file, is what lags); the first also consumes
    the impressions."""
    rest = tuple(s for s in streams_of(settings) if s != "impressions")
    return [ConsumerProcess(settings_file, streams=None if i == 0 else rest) for i in range(settings.consumers)]


if __name__ == "__main__":
    main(sys.argv[1], tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else None)
