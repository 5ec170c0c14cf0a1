"""Duplicate-detection marks in Redis (`aisle.serve.marks`): one hash per shopper, a mark counts for its TTL (never
less), old-layout marks are honoured until they expire, a non-stop shopper's hash stays bounded, erasure takes all."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from aisle.serve import marks
from aisle.serve.state import RedisState
from aisle.serve.stream import EventStream
from tests.redisserver import redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis"), aof=False) as url:
        yield url


def _run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """asyncio.run in a thread of its own: another test's library may hold a running loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(lambda: asyncio.run(make())).result()


def _events(user: str, ids: list[str]) -> list[dict[str, Any]]:
    ts = datetime(2026, 12, 1, tzinfo=UTC)
    return [{"event_id": i, "user_id": user, "item_id": "i1", "event_type": "view", "timestamp": ts} for i in ids]


def test_a_shoppers_marks_are_one_compact_hash(redis_url: str) -> None:
    """100 events of one shopper: one key, kept as a listpack, a few tens of bytes per mark (the old layout took
    about 200: a string key with a TTL per event and its copy in the shopper's index set). A key without an event
    id (it holds the search text, longer than a listpack's 64-byte values) does not turn the hash into a table."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    async def go() -> None:
        state = RedisState(redis_url, prefix="m1:")
        keys = [f"m1-user|i{k:05d}|search|2026-12-01T10:00:{k % 60:02d}+00:00|a rather long search text {k}"
                for k in range(100)]
        assert await state.mark_seen(keys, ["shopper"] * 100) == [False] * 100
        assert await state.mark_seen(keys[:3], ["shopper"] * 3) == [True] * 3
        await state.close()

    _run(go)
    assert r.keys("m1:*") == ["m1:marks:shopper"]
    assert r.object("encoding", "m1:marks:shopper") == "listpack"
    per_mark = r.memory_usage("m1:marks:shopper") / 100
    assert per_mark < 40, per_mark
    assert 0 < r.ttl("m1:marks:shopper") <= marks.SEEN_TTL_S + 2 * 3600


def test_a_mark_counts_for_the_ttl_and_at_most_an_hour_longer(redis_url: str, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    hour = [500_000]
    monkeypatch.setattr(marks, "hour_now", lambda: hour[0])

    async def go() -> list[list[bool]]:
        state = RedisState(redis_url, prefix="m2:")
        out = [await state.mark_seen(["e1"], ["u"])]
        hour[0] += 7 * 24  # 7 days later (up to 7 days + 59 min): still a duplicate
        out.append(await state.peek_seen(["e1"], ["u"]))
        hour[0] += 1  # over 7 days + 1 h: forgotten, and marked again
        out.append(await state.mark_seen(["e1"], ["u"]))
        out.append(await state.mark_seen(["e1"], ["u"]))
        await state.close()
        return out

    assert _run(go) == [[False], [True], [False], [True]]


def test_old_layout_marks_are_honoured_until_they_expire(redis_url: str) -> None:
    """Marks written before the upgrade (`<prefix>seen:<key>` strings indexed in `<prefix>seenby:<user>`) still
    refuse a repost through the stream's script; once a key has expired, its event is new again."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.set("m3:seen:old-1", 1, ex=3600)
    r.set("m3:seen:old-2", 1, ex=3600)
    r.sadd("m3:seenby:u", "m3:seen:old-1", "m3:seen:old-2")
    r.expire("m3:seenby:u", 3600)
    r.set("m3:seen:elsewhere", 1, ex=3600)  # a key of another shopper's index: not u's duplicate

    async def go() -> list[list[bool]]:
        state = RedisState(redis_url, prefix="m3:")
        stream = EventStream(state)
        out = [await stream.publish(["old-1", "new-1", "elsewhere"], _events("u", ["old-1", "new-1", "elsewhere"]))]
        r.delete("m3:seen:old-2")  # expired
        out.append(await stream.publish(["old-2", "new-1"], _events("u", ["old-2", "new-1"])))
        out.append(await state.mark_seen(["old-1"], ["u"]))
        await state.close()
        return out

    assert _run(go) == [[True, False, False], [False, True], [True]]
    assert [e["e"].count('"new-1"') for _, e in r.xrange("m3:stream:events")] == [1, 0]

    async def erase() -> None:
        state = RedisState(redis_url, prefix="m3:")
        await state.erase("u")
        await state.close()

    _run(erase)
    assert not r.exists("m3:marks:u", "m3:seenby:u", "m3:seen:old-1")


def test_a_shopper_who_never_stops_keeps_a_bounded_hash(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash's key never expires while its shopper posts at least weekly, so the marks past their time are
    pruned: once per doubling of the hash, so the hash holds at most about twice the marks that still count."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    hour = [600_000]
    monkeypatch.setattr(marks, "hour_now", lambda: hour[0])

    async def go() -> None:
        state = RedisState(redis_url, prefix="m4:")
        serial = 0
        for _day in range(60):  # two months of 100 events a day
            hour[0] += 24
            keys = [f"e{serial + k}" for k in range(100)]
            serial += 100
            assert not any(await state.mark_seen(keys, ["busy"] * 100))
            assert r.hlen("m4:marks:busy") <= 2 * 8 * 100 + 100 + 1  # twice the counting marks, plus a batch
        assert await state.peek_seen([f"e{serial - 700}", f"e{serial - 900}"], ["busy"] * 2) == [True, False]
        await state.close()

    _run(go)
