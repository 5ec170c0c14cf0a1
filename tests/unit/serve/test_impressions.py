"""The impression log's buffer: what a flush writes, what it keeps when the store refuses, what it drops and counts
past its bound, and the stream's encoding of buffered lists."""

from __future__ import annotations

import uuid
from typing import Any

import polars as pl
from prometheus_client import CollectorRegistry, Counter

from aisle.serve.impressions import DETERMINISTIC, ImpressionLog, decode, encode, new_request_id, to_frame
from aisle.types import IMPRESSION_SCHEMA


class Flaky:
    def __init__(self) -> None:
        self.down = False
        self.batches: list[list[Any]] = []

    def __call__(self, served: list[Any]) -> None:
        if self.down:
            raise ConnectionError("store down")
        self.batches.append(served)


def _log(write: Any, **kw: Any) -> tuple[ImpressionLog, Counter]:
    counter = Counter("imp", "impressions", ["outcome"], registry=CollectorRegistry())
    return ImpressionLog(write, flush_s=3600, counter=counter, **kw), counter


def _n(counter: Counter, outcome: str) -> float:
    return counter.labels(outcome)._value.get()


def test_a_refused_flush_is_kept_and_written_at_the_next_one() -> None:
    sink = Flaky()
    log, counter = _log(sink)
    log.record("r1", "trending", ["a", "b"], [2.0, 1.0], policy=DETERMINISTIC, user_id="u")
    sink.down = True
    assert log.flush() == 0 and not sink.batches
    log.record("r2", "search", ["c"], [None], policy=DETERMINISTIC, session_id="s", query="q", offset=20)
    sink.down = False
    assert log.flush() == 3
    frame = to_frame([s for b in sink.batches for s in b])
    assert frame.schema == pl.Schema(IMPRESSION_SCHEMA)
    assert frame.select("request_id", "item_id", "position", "propensity").rows() == [
        ("r1", "a", 1, 1.0), ("r1", "b", 2, 1.0), ("r2", "c", 21, 1.0)]
    assert (_n(counter, "logged"), _n(counter, "written"), _n(counter, "dropped")) == (3, 3, 0)
    log.close()


def test_past_its_bound_the_oldest_rows_are_dropped_and_counted() -> None:
    sink = Flaky()
    sink.down = True
    log, counter = _log(sink, max_buffered=4)
    for k in range(3):
        log.record(f"r{k}", "trending", ["a", "b"], [1.0, 0.5], policy=DETERMINISTIC)
        log.flush()
    assert _n(counter, "dropped") == 2  # r0 went when r2 made it 6 rows
    sink.down = False
    log.close()  # the stop writes what is left
    assert [s[0] for b in sink.batches for s in b] == ["r1", "r2"] and _n(counter, "written") == 4


def test_an_empty_list_logs_nothing_and_the_stream_encoding_round_trips() -> None:
    sink = Flaky()
    log, _ = _log(sink)
    log.record("r0", "similar", [], [], policy=DETERMINISTIC)
    log.record("r1", "similar", ["x", "y"], [0.5, 0.25], policy=DETERMINISTIC, user_id="u", model_version="v",
               arm="b")
    log.close()
    served = [s for b in sink.batches for s in b]
    assert [s[0] for s in served] == ["r1"]
    assert decode([encode(served)]).equals(to_frame(served))


def test_request_ids_are_distinct_uuid4_strings() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for rid in ids[:200]:
        parsed = uuid.UUID(rid)
        assert str(parsed) == rid and parsed.version == 4 and parsed.variant == uuid.RFC_4122
