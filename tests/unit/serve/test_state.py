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
    assert await state.mark_seen(["a", "b"], ["u0", "u0"]) == [False, False]
    assert await state.mark_seen(["b", "c", "c"], ["u0"] * 3) == [True, False, True]
    assert await state.mark_seen(["a"], ["u9"]) == [False]  # a duplicate is the same key from the same shopper
    await state.append({"u1": [("i2", "view", 20), ("i1", "view", 10)]})
    await state.append({"u1": [(f"x{i}", "click", 100 + i) for i in range(5)]})
    events, erased = await state.history("u1")
    assert [e[0] for e in events] == ["x1", "x2", "x3", "x4"] and not erased  # history_length = 4, oldest first
    assert await state.erase("u1") == 4
    assert await state.history("u1") == ([], True)
    assert await state.history("nobody") == ([], False)
    # duplicate-detection keys: peeking remembers nothing; erasing a user forgets the keys of their events only
    assert await state.peek_seen(["p1", "a"], ["u0", "u0"]) == [False, True]
    assert await state.peek_seen(["p1"], ["u0"]) == [False]
    assert await state.mark_seen(["u2|i1|view", "e-9", "e-other"], ["u2", "u2", "u3"]) == [False, False, False]
    assert await state.erase("u2") == 0
    assert await state.peek_seen(["u2|i1|view", "e-9", "e-other", "a"], ["u2", "u2", "u3", "u0"]) == [
        False, False, True, True]
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


async def _trimmed(state: RedisState, url: str) -> None:
    from aisle.serve.catalog_log import read_log, trim_log

    for batch in ([{"item_id": "a", "title": "A"}], [{"item_id": "b", "title": "B"}],
                  [{"item_id": "a", "title": "A2"}, {"item_id": "c", "title": "C"}]):
        await state.put_items(batch)
    assert trim_log(url, 2, prefix="t3:") == {"base": 2, "dropped": 2}
    assert trim_log(url, 1, prefix="t3:") == {"base": 2, "dropped": 0}  # never backwards
    log = read_log(url, prefix="t3:")
    assert (log.base, log.version, log.batches) == (2, 3, [[{"item_id": "a", "title": "A2"},
                                                            {"item_id": "c", "title": "C"}]])
    # a worker that starts (version 0) or lags behind the base reads what is left; one past it, only what is newer
    assert await state.items_since(0) == (3, [{"item_id": "a", "title": "A2"}, {"item_id": "c", "title": "C"}])
    assert await state.items_since(3) == (3, [])
    assert await state.put_items([{"item_id": "d", "title": "D"}]) == 4
    assert await state.items_since(3) == (4, [{"item_id": "d", "title": "D"}])
    assert sorted(await state.r.hkeys("t3:items")) == ["a", "c", "d"]  # b went with its batch; a is still named
    assert trim_log(url, 99, prefix="t3:") == {"base": 4, "dropped": 2}  # at most what the log holds
    assert await state.items_since(0) == (4, []) and await state.r.hkeys("t3:items") == []
    await state.close()


def test_redis_catalog_log_trims_only_old_batches(redis_url: str) -> None:
    _run(lambda: _trimmed(RedisState(redis_url, prefix="t3:"), redis_url))


def test_coverage_stops_before_an_upsert_the_catalog_lacks() -> None:
    import polars as pl

    from aisle.serve.catalog_log import CatalogLog, covered
    from aisle.serve.runtime import upsert_frame

    def rec(item: str, title: str) -> dict:
        return {"item_id": item, "title": title, "price": 1.0, "categories": ["x"], "attributes": "{}"}

    batches = [[rec("a", "A")], [rec("b", "B")], [rec("c", "C")], [rec("b", "B2")]]
    log = CatalogLog(base=10, version=14, batches=batches)
    full = upsert_frame([rec("a", "A"), rec("c", "C"), rec("b", "B2")])
    assert covered(full, log) == 14
    # the store write of batch 13 ("c") came after the catalog was read: coverage stops at 12
    assert covered(full.filter(pl.col("item_id") != "c"), log) == 12
    # "b" as batch 12 had it, not as batch 14 re-recorded it: 14 is what "b" needs, so 13 is covered
    stale = upsert_frame([rec("a", "A"), rec("c", "C"), rec("b", "B")])
    assert covered(stale, log) == 13
    assert covered(None, log) == 10
    assert covered(full, CatalogLog(base=0, version=3, batches=[])) == 0  # no log for those versions: nothing vouched
