"""The impression log: every served list, one row per shown item (`aisle.types.IMPRESSION_SCHEMA`), kept off the
request path.

A route gives each answer a request id (returned in the body and the `X-Request-Id` header) and calls
`ImpressionLog.record`: one tuple appended to an in-process buffer under a lock, a few microseconds. A background
thread of the worker takes the buffer every `impressions_flush_s` and writes it out:

* memory state: to the store, through the store writer thread (`StoreSink`), in one transaction per flush;
* Redis state: as one entry of the Redis stream `aisle:impressions`, which the stream consumers write to the store
  as they do events (`aisle.serve.stream.Consumer`), idempotent by (request_id, position).

What that guarantees (the README says it to users): impressions are not acknowledged to anyone, so a worker that
dies (kill -9, a crash) loses what it buffered since its last flush, at most `impressions_flush_s` of its
traffic; a graceful stop flushes. A flush the store or Redis refuses is kept and retried at the next one; past
`max_buffered` rows the oldest are dropped, counted in `aisle_impressions_total{outcome="dropped"}` and logged,
never silently.

Propensities come from the serving policy (`Policy`): today's lists are deterministic, so each shown item had
probability 1 of being shown where it was; an exploring policy answers with its own probabilities.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson
import polars as pl

from aisle.types import IMPRESSION_SCHEMA

log = logging.getLogger("aisle.serve")

IMPRESSIONS_STREAM = "impressions"
"""The Redis stream's name after the key prefix: `aisle:impressions`."""

_NAMES = list(IMPRESSION_SCHEMA)


def new_request_id() -> str:
    """A random (uuid4) request id: unique without coordination between workers and replicas. Built from the same
    16 random bytes as `uuid.uuid4` gives, without the UUID object (half the CPU; every served list takes one)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Policy(Protocol):
    """How a list was chosen, as the impression log needs it: the probability of each shown item at its place."""

    def propensities(self, n: int) -> list[float]: ...


class DeterministicPolicy:
    """The pipeline and rules as they are: the same request always gets the same list, so every shown item had
    probability 1 of being shown where it was."""

    def propensities(self, n: int) -> list[float]:
        return [1.0] * n


DETERMINISTIC = DeterministicPolicy()

# one served list, as buffered: request_id, time (us), user, session, surface, version, arm, query, offset,
# item ids, scores, propensities
Served = tuple[str, int, str | None, str | None, str, str | None, str | None, str | None, int, list[str],
               list[float | None], list[float]]


def to_frame(served: Sequence[Served]) -> pl.DataFrame:
    """Buffered lists -> IMPRESSION_SCHEMA rows (one per shown item, positions 1-based after the list's offset)."""
    cols: dict[str, list[Any]] = {n: [] for n in _NAMES}
    for rid, ts, user, session, surface, version, arm, query, offset, items, scores, props in served:
        n = len(items)
        for name, value in (("request_id", rid), ("timestamp", ts), ("user_id", user), ("session_id", session),
                            ("surface", surface), ("model_version", version), ("arm", arm), ("query", query)):
            cols[name] += [value] * n
        cols["item_id"] += items
        cols["position"] += range(offset + 1, offset + n + 1)
        cols["score"] += scores
        cols["propensity"] += props
    data: dict[str, Any] = dict(cols)
    data["timestamp"] = pl.Series(cols["timestamp"], dtype=pl.Int64).cast(IMPRESSION_SCHEMA["timestamp"])
    return pl.DataFrame(data, schema=IMPRESSION_SCHEMA)


def rows(served: Sequence[Served]) -> int:
    """Impression rows (shown items) in buffered lists."""
    return sum(len(s[9]) for s in served)


def encode(served: Sequence[Served]) -> bytes:
    """Buffered lists as one Redis stream entry: JSON arrays as buffered (one per list, not per item), so the
    worker's flush costs one orjson call; the consumer expands them into rows (`decode`)."""
    return orjson.dumps(served)


def decode(payloads: list[str | bytes]) -> pl.DataFrame:
    """Stream entries (`encode`) -> one IMPRESSION_SCHEMA frame."""
    return to_frame([tuple(s) for p in payloads for s in orjson.loads(p)])  # type: ignore[misc]


class ImpressionLog:
    """Buffer of served lists, written out by a background thread with `write(lists)` (which raises on failure)."""

    def __init__(self, write: Callable[[list[Served]], None], *, flush_s: float = 1.0, max_buffered: int = 500_000,
                 counter: Any = None) -> None:
        self._write = write
        self.flush_s = flush_s
        self.max_buffered = max_buffered
        self._counter = counter  # prometheus Counter with an `outcome` label, or None
        self._lock = threading.Lock()  # the buffer (taken per request: held for an append)
        self._flushing = threading.Lock()  # one flush at a time (the thread, a report's read, the stop)
        self._buffer: list[Served] = []
        self._pending: list[list[Served]] = []  # flushes that failed, retried first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aisle-impressions", daemon=True)
        self._thread.start()

    def record(self, request_id: str, surface: str, items: list[str], scores: list[float | None], *,
               policy: Policy, user_id: str | None = None, session_id: str | None = None,
               model_version: str | None = None, arm: str | None = None, query: str | None = None,
               offset: int = 0) -> None:
        """Buffer one served list (the request path: no I/O)."""
        if not items:
            return
        row = (request_id, time.time_ns() // 1000, user_id, session_id, surface, model_version, arm, query, offset,
               items, scores, policy.propensities(len(items)))
        with self._lock:
            self._buffer.append(row)

    def flush(self) -> int:
        """Write what is buffered (and what failed before); returns the rows written. Thread-safe."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            served, self._buffer = self._buffer, []
        if served:
            self._count("logged", rows(served))
            self._pending.append(served)
        written = 0
        while self._pending:
            batch = self._pending[0]
            try:
                self._write(batch)
            except Exception as exc:
                log.warning("impressions not written (%d rows kept for the next try): %s: %s",
                            sum(rows(b) for b in self._pending), type(exc).__name__, exc)
                self._trim()
                break
            self._pending.pop(0)
            written += rows(batch)
            self._count("written", rows(batch))
        return written

    def _trim(self) -> None:
        while self._pending and sum(rows(b) for b in self._pending) > self.max_buffered:
            lost = rows(self._pending.pop(0))
            self._count("dropped", lost)
            log.error("dropped %d impression rows: the store or stream refused them for too long", lost)

    def _count(self, outcome: str, n: int) -> None:
        if self._counter is not None and n:
            self._counter.labels(outcome).inc(n)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # never let the thread die: the next round tries again
                log.exception("impression flush failed")

    def close(self) -> None:
        """Stop the thread and write what is left (a graceful stop loses nothing the store takes)."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()


__all__ = ["DETERMINISTIC", "IMPRESSIONS_STREAM", "DeterministicPolicy", "ImpressionLog", "Policy", "Served",
           "decode", "encode", "new_request_id", "rows", "to_frame"]
