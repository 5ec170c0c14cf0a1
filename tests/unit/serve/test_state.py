"""Live state stores: the same behaviour in memory and in Redis (started here on a free port)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator

import pytest

from aisle.serve.state import CONVERSATION_STEPS, MemoryState, RedisState, StateStore
from tests.redisserver import redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis"), aof=False) as url:
        yield url


async def _contract(state: StateStore) -> None:
    assert await state.mark_seen(["a", "b"]) == [False, False]
    assert await state.mark_seen(["b", "c", "c"]) == [True, False, True]
    await state.append({"u1": [("i2", "view", 20), ("i1", "view", 10)]})
    await state.append({"u1": [(f"x{i}", "click", 100 + i) for i in range(5)]})
    events, erased = await state.history("u1")
    assert [e[0] for e in events] == ["x1", "x2", "x3", "x4"] and not erased  # history_length = 4, oldest first
    assert await state.erase("u1") == 4
    assert await state.history("u1") == ([], True)
    assert await state.history("nobody") == ([], False)
    # duplicate-detection keys: peeking remembers nothing; erasing a user forgets the keys of their events only
    assert await state.peek_seen(["p1", "a"]) == [False, True]
    assert await state.peek_seen(["p1"]) == [False]
    assert await state.mark_seen(["u2|i1|view", "e-9", "e-other"], ["u2", "u2", "u3"]) == [False, False, False]
    assert await state.erase("u2") == 0
    assert await state.peek_seen(["u2|i1|view", "e-9", "e-other", "a"]) == [False, False, True, True]
    assert await state.erased_among(["u1", "u2", "u3"]) == [True, True, False]
    v0, _ = await state.items_since(0)
    v1 = await state.put_items([{"item_id": "n1", "title": "new"}])
    assert v1 > v0
    version, items = await state.items_since(v0)
    assert version == v1 and items == [{"item_id": "n1", "title": "new"}]
    assert await state.items_since(v1) == (v1, [])
    # search sessions: kept as given, at most the last CONVERSATION_STEPS, erased with the user they were opened for
    assert await state.get_conversation("s-none") == []
    steps = [{"query": f"q{i}", "filters": {"price_max": i}} for i in range(CONVERSATION_STEPS + 3)]
    await state.put_conversation("s-a", steps, "u5")
    await state.put_conversation("s-b", steps[:1], None)
    got = await state.get_conversation("s-a")
    assert got == steps[-CONVERSATION_STEPS:] and got is not steps
    assert await state.erase("u5") == 0
    assert await state.get_conversation("s-a") == [] and await state.get_conversation("s-b") == steps[:1]
    v2 = await state.put_items([{"item_id": "n2", "title": "two"}, {"item_id": "n1", "title": "renamed"}])
    v3 = await state.put_items([{"item_id": "n3", "title": "three"}, {"item_id": "n2", "title": "two again"}])
    assert await state.catalog_version() == v3 > v2 > v1
    assert await state.items_since(v1) == (v3, [{"item_id": "n2", "title": "two again"},  # only what came after
                                                {"item_id": "n1", "title": "renamed"},
                                                {"item_id": "n3", "title": "three"}])
    assert await state.items_since(v2) == (v3, [{"item_id": "n3", "title": "three"},
                                                {"item_id": "n2", "title": "two again"}])
    assert await state.ping()
    await state.close()


def _run(make: object) -> None:
    """asyncio.run in a thread of its own: another test's library may hold a running loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        ex.submit(lambda: asyncio.run(make())).result()  # type: ignore[operator]


def test_memory_state() -> None:
    _run(lambda: _contract(MemoryState(history_length=4)))


def test_redis_state(redis_url: str) -> None:
    _run(lambda: _contract(RedisState(redis_url, history_length=4, prefix="t1:")))


async def _pipelined_reads(state: RedisState) -> None:
    await state.append({f"p{i}": [(f"i{i}", "view", i)] for i in range(50)})
    await state.erase("p7")
    reads = await asyncio.gather(*(state.history(f"p{i % 60}") for i in range(300)))
    for i, (events, erased) in enumerate(reads):  # each request got its own replies, in order
        u = i % 60
        assert erased == (u == 7)
        assert events == ([(f"i{u}", "view", u)] if u < 50 and u != 7 else [])
    assert state._reader is not None
    state._reader.close()  # the read connection dropped: the next read opens another
    assert await state.history("p3") == ([("i3", "view", 3)], False)
    state._where = {**state._where, "port": 1}  # and when it cannot be opened, redis-py answers
    state._reader.close()
    assert await state.history("p4") == ([("i4", "view", 4)], False)
    await state.close()


def test_redis_history_reads_are_pipelined_and_fail_over(redis_url: str) -> None:
    _run(lambda: _pipelined_reads(RedisState(redis_url, prefix="t2:")))
