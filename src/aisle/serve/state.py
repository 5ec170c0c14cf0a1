"""Live serving state: each shopper's events since the bundle, seen event ids, erasures, catalog upserts.

Two backends behind one small async protocol, chosen by `Settings.state`: `MemoryState` (one process; the
default, nothing to run) and `RedisState` (any number of workers and replicas share it; what `--workers 2`
needs). Events are kept by item *id*, not index, so they survive a hot swap to a bundle with another
vocabulary. Idempotency: an event's key (its event_id, else user|item|type|timestamp) is remembered for a week
(Redis) or for the last million events (memory); a repeat is counted as a duplicate and changes nothing.
An erased user is marked, so the bundle's copy of their history is ignored until a bundle without them loads.
Search sessions (the steps of a conversational search, `aisle.search.refine`) are kept a day, and erased with
the user they were opened for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any, Protocol

from aisle.serve import marks

LiveEvent = tuple[str, str, int]  # item_id, event_type, timestamp (microseconds)

CONVERSATION_TTL_S = 24 * 3600  # a search conversation is forgotten a day after its last turn
CONVERSATION_STEPS = 20  # how far back "undo" can go
_SESSIONS_MAX = 100_000
_SEEN_MAX = 1_000_000
_TIMEOUT_S = 2.0

log = logging.getLogger("aisle.serve")


class StateStore(Protocol):
    backend: str

    async def mark_seen(self, keys: list[str], users: list[str]) -> list[bool]:
        """Remember `keys`, each for the shopper `users[i]` who sent its event (a duplicate is the same key from
        the same shopper; erasing the shopper forgets theirs); True for each one that was already there."""
        ...

    async def peek_seen(self, keys: list[str], users: list[str]) -> list[bool]:
        """True for each of `keys` already remembered for `users[i]` (remembers nothing)."""
        ...

    async def append(self, events: dict[str, list[LiveEvent]]) -> None: ...

    async def history(self, user_id: str) -> tuple[list[LiveEvent], bool]:
        """The user's live events (oldest first) and whether they were erased."""
        ...

    async def history_at(self, user_id: str) -> tuple[list[LiveEvent], bool, int]:
        """`history` and the current catalog version (`catalog_version`) read together: what a recommendation
        needs before it answers, in one round trip to Redis instead of two."""
        ...

    async def erase(self, user_id: str) -> int:
        """Forget the user's live events and duplicate-detection keys, and mark them erased; returns the number
        of live events dropped."""
        ...

    async def erased_among(self, user_ids: list[str]) -> list[bool]: ...

    async def get_conversation(self, session_id: str) -> list[dict[str, Any]]:
        """A search session's steps (oldest first; empty when unknown or expired)."""
        ...

    async def put_conversation(self, session_id: str, steps: list[dict[str, Any]], user_id: str | None) -> None:
        """Keep a search session's steps (the last `CONVERSATION_STEPS`), for `CONVERSATION_TTL_S`; erasing `user_id`
        deletes it."""
        ...

    async def put_items(self, items: list[dict[str, Any]]) -> int:
        """Record catalog upserts (JSON-ready item dicts); returns the new catalog version."""
        ...

    async def items_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        """The current catalog version and the items upserted after `version` (each id once, its last record,
        in upsert order); `version` 0: every upserted item."""
        ...

    async def catalog_version(self) -> int:
        """The current catalog version alone: the cheap check a worker makes before answering a read."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def _latest(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item id once, its last record, in the order ids first appear."""
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        out[it["item_id"]] = it
    return list(out.values())


class MemoryState:
    backend = "memory"

    def __init__(self, history_length: int = 50) -> None:
        self.history_length = history_length
        self._events: dict[str, deque[LiveEvent]] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()  # (user, key)
        self._erased: set[str] = set()
        self._items: dict[str, dict[str, Any]] = {}
        self._log: list[list[dict[str, Any]]] = []  # the batch of each version
        self._version = 0
        self._sessions: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._sessions_of: dict[str, set[str]] = {}

    async def mark_seen(self, keys: list[str], users: list[str]) -> list[bool]:
        out = []
        for mark in zip(users, keys, strict=True):
            known = mark in self._seen
            out.append(known)
            if not known:
                self._seen[mark] = None
        while len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        return out

    async def peek_seen(self, keys: list[str], users: list[str]) -> list[bool]:
        return [mark in self._seen for mark in zip(users, keys, strict=True)]

    async def append(self, events: dict[str, list[LiveEvent]]) -> None:
        for user, evs in events.items():
            q = self._events.setdefault(user, deque(maxlen=self.history_length))
            q.extend(sorted(evs, key=lambda e: e[2]))

    async def history(self, user_id: str) -> tuple[list[LiveEvent], bool]:
        return list(self._events.get(user_id, ())), user_id in self._erased

    async def history_at(self, user_id: str) -> tuple[list[LiveEvent], bool, int]:
        return list(self._events.get(user_id, ())), user_id in self._erased, self._version

    async def erase(self, user_id: str) -> int:
        n = len(self._events.pop(user_id, ()))
        for mark in [m for m in self._seen if m[0] == user_id]:
            del self._seen[mark]
        for sid in self._sessions_of.pop(user_id, set()):
            self._sessions.pop(sid, None)
        self._erased.add(user_id)
        return n

    async def erased_among(self, user_ids: list[str]) -> list[bool]:
        return [u in self._erased for u in user_ids]

    async def get_conversation(self, session_id: str) -> list[dict[str, Any]]:
        got = self._sessions.get(session_id)
        if got is None or got[0] < time.time():
            return []
        return json.loads(json.dumps(got[1]))  # a copy: the caller may change it

    async def put_conversation(self, session_id: str, steps: list[dict[str, Any]], user_id: str | None) -> None:
        kept = json.loads(json.dumps(steps[-CONVERSATION_STEPS:]))
        self._sessions[session_id] = (time.time() + CONVERSATION_TTL_S, kept)
        self._sessions.move_to_end(session_id)
        if user_id is not None:
            self._sessions_of.setdefault(user_id, set()).add(session_id)
        while len(self._sessions) > _SESSIONS_MAX:
            self._sessions.popitem(last=False)

    async def put_items(self, items: list[dict[str, Any]]) -> int:
        for it in items:
            self._items[it["item_id"]] = it
        self._log.append(list(items))
        self._version += 1
        return self._version

    async def items_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        return self._version, _latest(it for batch in self._log[version:] for it in batch)

    async def catalog_version(self) -> int:
        return self._version

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


# ARGV[1] = how many hours a mark counts, ARGV[2] = the prefix, ARGV[3] = the hour now, ARGV[4] = n, then n keys and
# their n users. _PEEK checks; _MARK checks and marks the new ones (`aisle.serve.marks`), 1 for each duplicate.
_MARKS_ARGS = """
local n = tonumber(ARGV[4])
local p, hours, now = ARGV[2], tonumber(ARGV[1]), tonumber(ARGV[3])
local keys, users = {}, {}
for i = 1, n do
  keys[i] = ARGV[4 + i]
  users[i] = ARGV[4 + n + i]
end
local fields, dup, seen = check_marks(p, now, ARGV[3], hours, keys, users)
"""
_PEEK = marks.LUA + _MARKS_ARGS + "return dup\n"
_MARK = marks.LUA + _MARKS_ARGS + """
local fresh = {}
for i = 1, n do
  if dup[i] == 0 then
    fresh[#fresh + 1] = i
  end
end
set_marks(now, ARGV[3], hours, fields, users, fresh, seen)
return dup
"""

_ERASE = """
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
local keys = redis.call('SMEMBERS', KEYS[2])
for i = 1, #keys, 500 do
  redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
end
redis.call('DEL', KEYS[2], KEYS[5])
local sessions = redis.call('SMEMBERS', KEYS[4])
for i = 1, #sessions, 500 do
  redis.call('DEL', unpack(sessions, i, math.min(i + 499, #sessions)))
end
redis.call('DEL', KEYS[4])
redis.call('SADD', KEYS[3], ARGV[1])
return n
"""


# KEYS = the users' history lists; ARGV[1] = the history length, then per key: the number of its events and the
# events (JSON, oldest first). One script call per batch instead of two commands per user: packing and parsing
# hundreds of pipelined commands was a third of a worker's CPU under a bulk event load.
_APPEND = """
local at = 2
for i = 1, #KEYS do
  local n = tonumber(ARGV[at])
  for j = at + 1, at + n, 4000 do
    redis.call('RPUSH', KEYS[i], unpack(ARGV, j, math.min(j + 3999, at + n)))
  end
  redis.call('LTRIM', KEYS[i], -tonumber(ARGV[1]), -1)
  at = at + n + 1
end
return #KEYS
"""


class _ReplyError(Exception):
    """An error reply (`-ERR ...`) of Redis."""


def _bulk(s: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(s), s)


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


def _reply(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at `pos`: (value, end), end -1 while it is incomplete. Bulk strings stay bytes."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None, -1
    kind, line = buf[pos], buf[pos + 1:nl]
    if kind == 36:  # $: bulk string
        n = int(line)
        if n < 0:
            return None, nl + 2
        end = nl + 2 + n
        return (bytes(buf[nl + 2:end]), end + 2) if len(buf) >= end + 2 else (None, -1)
    if kind == 42:  # *: array
        n, at, out = int(line), nl + 2, []
        for _ in range(max(n, 0)):
            value, at = _reply(buf, at)
            if at < 0:
                return None, -1
            out.append(value)
        return (out if n >= 0 else None), at
    if kind == 58:  # :: integer
        return int(line), nl + 2
    if kind == 45:  # -: error
        return _ReplyError(line.decode(errors="replace")), nl + 2
    return line.decode(errors="replace"), nl + 2  # +: simple string


class _Reader(asyncio.Protocol):
    """One Redis connection for the hot paths (`RedisState.history`, `RedisState.script`): requests pipelined on
    one socket, each
    answered by its next replies in order. A request through redis-py costs ~170 us of a worker's CPU (connection
    pool, retry and event layers, a pure-Python parser), a write and a read here a few tens."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiting: deque[tuple[asyncio.Future[list[Any]], int, list[Any]]] = deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        at = 0
        while self.waiting:
            value, end = _reply(self.buf, at)
            if end < 0:
                break
            at = end
            fut, n, got = self.waiting[0]
            got.append(value)
            if len(got) == n:
                self.waiting.popleft()
                if not fut.done():
                    fut.set_result(got)
        del self.buf[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.waiting:
            fut = self.waiting.popleft()[0]
            if not fut.done():
                fut.set_exception(ConnectionError(f"redis connection lost: {exc}"))

    async def call(self, payload: bytes, replies: int) -> list[Any]:
        """Send `payload` (`replies` commands) and wait for their replies; a timeout closes the connection."""
        fut: asyncio.Future[list[Any]] = self.loop.create_future()
        self.waiting.append((fut, replies, []))
        self.transport.write(payload)  # type: ignore[union-attr]
        try:
            async with asyncio.timeout(_TIMEOUT_S):
                out = await fut
        except TimeoutError:
            self.close()  # Redis stalled: the requests behind this one fail over to redis-py too
            raise
        for value in out:
            if isinstance(value, _ReplyError):
                raise value
        return out

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RedisState:
    """The same state in Redis: `aisle:h:<user>` lists, `aisle:marks:<user>` hashes (`aisle.serve.marks`),
    `aisle:erased` set,
    `aisle:items` hash + `aisle:items:version` counter (workers pick upserts up by polling the version).

    Every command goes through redis-py, except the per-request read of `history` and the catalog version, which
    have a pipelined connection of its own per event loop (`_Reader`; TCP URLs) and fall back to redis-py when that
    fails, and the bulk writes run as scripts over the same connection (`script`)."""

    backend = "redis"

    def __init__(self, url: str, history_length: int = 50, prefix: str = "aisle:") -> None:
        import redis.asyncio as redis
        from redis.asyncio.connection import parse_url

        self.url = url
        self.history_length = history_length
        self.p = prefix
        self.r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=_TIMEOUT_S,
                                      socket_connect_timeout=_TIMEOUT_S, health_check_interval=30)
        self._where = parse_url(url)  # TLS and unix sockets name a connection_class: redis-py only
        self._reader: _Reader | None = None
        self._opening: asyncio.Task[_Reader] | None = None
        self._erased_key = f"{prefix}erased".encode()
        self._append = self.r.register_script(_APPEND)

    async def mark_seen(self, keys: list[str], users: list[str]) -> list[bool]:
        """The marks of `aisle.serve.marks` (one hash per shopper), checked and set in one script."""
        return await self._marks(_MARK, keys, users)

    async def peek_seen(self, keys: list[str], users: list[str]) -> list[bool]:
        return await self._marks(_PEEK, keys, users)

    async def _marks(self, body: str, keys: list[str], users: list[str]) -> list[bool]:
        if not keys:
            return []
        out = await self.script(body, [], [b"%d" % marks.ttl_hours(), self.p.encode(), b"%d" % marks.hour_now(),
                                           b"%d" % len(keys), *(k.encode() for k in keys),
                                           *(u.encode() for u in users)])
        return [bool(d) for d in out]

    async def append(self, events: dict[str, list[LiveEvent]]) -> None:
        if not events:
            return
        keys: list[str] = []
        args: list[Any] = [self.history_length]
        for user, evs in events.items():
            keys.append(f"{self.p}h:{user}")
            args.append(len(evs))
            args += [json.dumps(e) for e in sorted(evs, key=lambda e: e[2])]
        await self._append(keys=keys, args=args)

    async def history(self, user_id: str) -> tuple[list[LiveEvent], bool]:
        live, erased, _ = await self._read_user(user_id, version=False)
        return live, erased

    async def history_at(self, user_id: str) -> tuple[list[LiveEvent], bool, int]:
        return await self._read_user(user_id, version=True)

    async def _read_user(self, user_id: str, *, version: bool) -> tuple[list[LiveEvent], bool, int]:
        """LRANGE of the history and SISMEMBER of the erased set (and with `version` a GET of the catalog
        version, -1 without), pipelined in one round trip: each round trip is a wake-up of the worker's event
        loop, which on a busy machine waits for a CPU."""
        if "connection_class" not in self._where:
            user = user_id.encode()
            payload = (_command(b"LRANGE", f"{self.p}h:".encode() + user, b"0", b"-1")
                       + _command(b"SISMEMBER", self._erased_key, user))
            if version:
                payload += _command(b"GET", f"{self.p}items:version".encode())
            r = self._reader
            try:
                if r is None or r.closed or r.loop is not asyncio.get_running_loop():
                    r = await self._read_connection()
                raw, erased, *at = await r.call(payload, 3 if version else 2)
            except (OSError, ConnectionError, TimeoutError, _ReplyError) as exc:
                log.warning("redis history read failed (%s: %s), retrying through redis-py", type(exc).__name__, exc)
            else:
                return [tuple(json.loads(x)) for x in raw], bool(erased), int(at[0] or 0) if at else -1  # type: ignore[misc]
        pipe = self.r.pipeline(transaction=False)
        pipe.lrange(f"{self.p}h:{user_id}", 0, -1)
        pipe.sismember(f"{self.p}erased", user_id)
        if version:
            pipe.get(f"{self.p}items:version")
        raw, erased, *at = await pipe.execute()
        return [tuple(json.loads(x)) for x in raw], bool(erased), int(at[0] or 0) if at else -1  # type: ignore[misc]

    async def script(self, body: str, keys: list[bytes], args: list[bytes]) -> Any:
        """Run the Lua script `body` (EVALSHA, loading it on NOSCRIPT) over the pipelined connection: the bulk
        write of `POST /events` packs hundreds of arguments, which redis-py's per-argument encoding made a third
        of the request's CPU. Bulk strings in the reply stay bytes. TLS and unix-socket URLs go through redis-py.
        A failure raises (no retry: a write that timed out may have run; the caller answers 503 and the client's
        retry is then told which events were already taken)."""
        import hashlib

        if "connection_class" in self._where:
            return await self.r.eval(body, len(keys), *keys, *args)
        sha = hashlib.sha1(body.encode()).hexdigest().encode()
        r = self._reader
        if r is None or r.closed or r.loop is not asyncio.get_running_loop():
            r = await self._read_connection()
        numkeys = b"%d" % len(keys)
        try:
            (out,) = await r.call(_command(b"EVALSHA", sha, numkeys, *keys, *args), 1)
        except _ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):  # nothing ran: the script is not loaded yet
                raise
            (out,) = await r.call(_command(b"EVAL", body.encode(), numkeys, *keys, *args), 1)
        return out

    async def _read_connection(self) -> _Reader:
        """This loop's `_Reader`, opened (AUTH, SELECT as the URL says) by the first request that needs it."""
        loop = asyncio.get_running_loop()
        r = self._reader
        if r is not None and r.loop is loop and not r.closed:
            return r
        task = self._opening
        if task is None or task.get_loop() is not loop or task.done():
            task = self._opening = loop.create_task(self._open_reader(loop))
        return await asyncio.shield(task)

    async def _open_reader(self, loop: asyncio.AbstractEventLoop) -> _Reader:
        w = self._where
        async with asyncio.timeout(_TIMEOUT_S):
            _, reader = await loop.create_connection(lambda: _Reader(loop), w.get("host", "localhost"),
                                                     w.get("port", 6379))
        try:
            if w.get("password") is not None:
                auth = [w["username"], w["password"]] if w.get("username") else [w["password"]]
                await reader.call(_command(b"AUTH", *(str(a).encode() for a in auth)), 1)
            if w.get("db"):
                await reader.call(_command(b"SELECT", str(w["db"]).encode()), 1)
        except BaseException:
            reader.close()
            raise
        self._reader = reader
        return reader

    async def erase(self, user_id: str) -> int:
        """One script: the live history, the user's duplicate-detection marks (their hash `aisle:marks:<user>`,
        and the string keys of the old layout, indexed in `aisle:seenby:<user>`: a key without an event id holds
        the user's id and search text), then the erased mark."""
        n = await self.r.eval(_ERASE, 5, f"{self.p}h:{user_id}", f"{self.p}seenby:{user_id}", f"{self.p}erased",
                              f"{self.p}sessby:{user_id}", marks.marks_key(self.p, user_id), user_id)
        return int(n)

    async def erased_among(self, user_ids: list[str]) -> list[bool]:
        if not user_ids:
            return []
        return [bool(x) for x in await self.r.smismember(f"{self.p}erased", user_ids)]

    async def get_conversation(self, session_id: str) -> list[dict[str, Any]]:
        raw = await self.r.get(f"{self.p}search:{session_id}")
        return json.loads(raw) if raw else []

    async def put_conversation(self, session_id: str, steps: list[dict[str, Any]], user_id: str | None) -> None:
        """`aisle:search:<session>` (JSON, with a TTL), indexed in `aisle:sessby:<user>` so erasing the user
        deletes it."""
        pipe = self.r.pipeline(transaction=True)
        key = f"{self.p}search:{session_id}"
        pipe.set(key, json.dumps(steps[-CONVERSATION_STEPS:]), ex=CONVERSATION_TTL_S)
        if user_id is not None:
            pipe.sadd(f"{self.p}sessby:{user_id}", key)
            pipe.expire(f"{self.p}sessby:{user_id}", CONVERSATION_TTL_S)
        await pipe.execute()

    async def put_items(self, items: list[dict[str, Any]]) -> int:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(f"{self.p}items", mapping={it["item_id"]: json.dumps(it, default=str) for it in items})
        pipe.rpush(f"{self.p}items:log", json.dumps(items, default=str))  # entry v - 1 - base: version v's batch
        pipe.incr(f"{self.p}items:version")
        _, _, version = await pipe.execute()
        return int(version)

    async def items_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        """Read from the log of batches (one entry per version, written in the same transaction as the version),
        so a worker catching up reads what changed, not the whole hash. Batches the log no longer holds (trimmed
        by `aisle worker` once every version in the registry carries them: `aisle.serve.catalog_log`) are in the
        bundle a worker loads. A log that does not match the version (state written by an older Aisle) falls back
        to the hash."""
        from aisle.serve.catalog_log import ITEMS_SINCE, keys

        k = keys(self.p)
        current, base, batches = await self.r.eval(ITEMS_SINCE, 3, k["version"], k["base"], k["log"], version)
        current, base = int(current), int(base)
        if current <= version:
            return current, []
        if len(batches) == current - max(version, base):
            return current, _latest(it for b in batches for it in json.loads(b))
        raw = await self.r.hgetall(k["hash"])
        return current, [json.loads(v) for v in raw.values()]

    async def catalog_version(self) -> int:
        key = f"{self.p}items:version"
        if "connection_class" not in self._where:
            r = self._reader
            try:
                if r is None or r.closed or r.loop is not asyncio.get_running_loop():
                    r = await self._read_connection()
                (raw,) = await r.call(_command(b"GET", key.encode()), 1)
            except (OSError, ConnectionError, TimeoutError, _ReplyError) as exc:
                log.warning("redis version read failed (%s: %s), retrying through redis-py", type(exc).__name__, exc)
            else:
                return int(raw or 0)
        return int(await self.r.get(key) or 0)

    async def ping(self) -> bool:
        try:
            return bool(await self.r.ping())
        except Exception:
            return False

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self.r.aclose()


def open_state(url: str, history_length: int = 50) -> StateStore:
    return MemoryState(history_length) if url == "memory" else RedisState(url, history_length)


__all__ = ["LiveEvent", "MemoryState", "RedisState", "StateStore", "open_state"]
