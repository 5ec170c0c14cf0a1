"""Live serving state: each shopper's events since the bundle, seen event ids, erasures, catalog upserts.

Two backends behind one small async protocol, chosen by `Settings.state`: `MemoryState` (one process; the
default, nothing to run) and `RedisState` (any number of workers and replicas share it; what `--workers 2`
needs). Events are kept by item *id*, not index, so they survive a hot swap to a bundle with another
vocabulary. Idempotency: an event's key (its event_id, else user|item|type|timestamp) is remembered for a week
(Redis) or for the last million events (memory); a repeat is counted as a duplicate and changes nothing.
An erased user is marked, so the bundle's copy of their history is ignored until a bundle without them loads.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from typing import Any, Protocol

LiveEvent = tuple[str, str, int]  # item_id, event_type, timestamp (microseconds)

SEEN_TTL_S = 7 * 24 * 3600
_SEEN_MAX = 1_000_000


class StateStore(Protocol):
    backend: str

    async def mark_seen(self, keys: list[str]) -> list[bool]:
        """Remember `keys`; True for each one that was already there."""
        ...

    async def append(self, events: dict[str, list[LiveEvent]]) -> None: ...

    async def history(self, user_id: str) -> tuple[list[LiveEvent], bool]:
        """The user's live events (oldest first) and whether they were erased."""
        ...

    async def erase(self, user_id: str) -> int: ...

    async def put_items(self, items: list[dict[str, Any]]) -> int:
        """Record catalog upserts (JSON-ready item dicts); returns the new catalog version."""
        ...

    async def items_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        """The current catalog version and every upserted item if it is newer than `version`."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class MemoryState:
    backend = "memory"

    def __init__(self, history_length: int = 50) -> None:
        self.history_length = history_length
        self._events: dict[str, deque[LiveEvent]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._erased: set[str] = set()
        self._items: dict[str, dict[str, Any]] = {}
        self._version = 0

    async def mark_seen(self, keys: list[str]) -> list[bool]:
        out = []
        for k in keys:
            out.append(k in self._seen)
            self._seen[k] = None
        while len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        return out

    async def append(self, events: dict[str, list[LiveEvent]]) -> None:
        for user, evs in events.items():
            q = self._events.setdefault(user, deque(maxlen=self.history_length))
            q.extend(sorted(evs, key=lambda e: e[2]))

    async def history(self, user_id: str) -> tuple[list[LiveEvent], bool]:
        return list(self._events.get(user_id, ())), user_id in self._erased

    async def erase(self, user_id: str) -> int:
        n = len(self._events.pop(user_id, ()))
        self._erased.add(user_id)
        return n

    async def put_items(self, items: list[dict[str, Any]]) -> int:
        for it in items:
            self._items[it["item_id"]] = it
        self._version += 1
        return self._version

    async def items_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        return self._version, (list(self._items.values()) if self._version > version else [])

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisState:
    """The same state in Redis: `aisle:h:<user>` lists, `aisle:seen:<key>` with a TTL, `aisle:erased` set,
    `aisle:items` hash + `aisle:items:version` counter (workers pick upserts up by polling the version)."""

    backend = "redis"

    def __init__(self, url: str, history_length: int = 50, prefix: str = "aisle:") -> None:
        import redis.asyncio as redis

        self.url = url
        self.history_length = history_length
        self.p = prefix
        self.r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0,
                                      health_check_interval=30)

    async def mark_seen(self, keys: list[str]) -> list[bool]:
        if not keys:
            return []
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.set(f"{self.p}seen:{k}", 1, nx=True, ex=SEEN_TTL_S)
        return [not bool(ok) for ok in await pipe.execute()]

    async def append(self, events: dict[str, list[LiveEvent]]) -> None:
        if not events:
            return
        pipe = self.r.pipeline(transaction=False)
        for user, evs in events.items():
            key = f"{self.p}h:{user}"
            pipe.rpush(key, *[json.dumps(e) for e in sorted(evs, key=lambda e: e[2])])
            pipe.ltrim(key, -self.history_length, -1)
        await pipe.execute()

    async def history(self, user_id: str) -> tuple[list[LiveEvent], bool]:
        pipe = self.r.pipeline(transaction=False)
        pipe.lrange(f"{self.p}h:{user_id}", 0, -1)
        pipe.sismember(f"{self.p}erased", user_id)
        raw, erased = await pipe.execute()
        return [tuple(json.loads(x)) for x in raw], bool(erased)  # type: ignore[misc]

    async def erase(self, user_id: str) -> int:
        pipe = self.r.pipeline(transaction=True)
        pipe.llen(f"{self.p}h:{user_id}")
        pipe.delete(f"{self.p}h:{user_id}")
        pipe.sadd(f"{self.p}erased", user_id)
        n, _, _ = await pipe.execute()
        return int(n)

    async def put_items(self, items: list[dict[str, Any]]) -> int:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(f"{self.p}items", mapping={it["item_id"]: json.dumps(it, default=str) for it in items})
        pipe.incr(f"{self.p}items:version")
        _, version = await pipe.execute()
        return int(version)

    async def items_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        current = int(await self.r.get(f"{self.p}items:version") or 0)
        if current <= version:
            return current, []
        raw = await self.r.hgetall(f"{self.p}items")
        return current, [json.loads(v) for v in raw.values()]

    async def ping(self) -> bool:
        try:
            return bool(await self.r.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self.r.aclose()


def open_state(url: str, history_length: int = 50) -> StateStore:
    return MemoryState(history_length) if url == "memory" else RedisState(url, history_length)


__all__ = ["LiveEvent", "MemoryState", "RedisState", "StateStore", "open_state"]
