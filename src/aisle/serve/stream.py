"""The durable event stream between the API and the store (Redis state + a store).

`POST /events` runs one Lua script (`EventStream.publish`): it checks each event's duplicate-detection mark
(`aisle.serve.marks`), XADDs the new events as one entry of the stream `aisle:stream:events`, then sets their
marks; Redis runs a script
atomically and writes its effects to the AOF as one transaction, so an event is marked seen exactly when its
entry is in the stream, and the request answers 2xx only after that. A failed script marks nothing: a retry of
the batch is accepted again. What an acknowledged event survives then depends on Redis' AOF setting (README,
"Serving": `appendfsync always` vs `everysec`).

`Consumer` (run by `aisle consume`, and by default in a thread of every `aisle serve` worker) reads the stream
in the consumer group `aisle-store`, appends the events of a batch of entries to the store (idempotent by event
key, so a redelivery stores nothing twice), and only after the store committed XACKs and XDELs the entries: the
stream holds exactly the entries not yet acknowledged, and its length is the lag. Several consumers share the
work; entries a consumer took and never acknowledged (it died) are claimed by another after `claim_idle_s`
(XAUTOCLAIM) and written again. Counters of consumed events and redelivered entries live in Redis, so
`/metrics` of any worker shows the whole fleet's.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import polars as pl

from aisle.serve import marks
from aisle.types import EVENT_SCHEMA

log = logging.getLogger("aisle.stream")

GROUP = "aisle-store"
#: A file to append one JSON line per consumer round to (entries read, seconds reading, writing, acknowledging,
#: pausing): what `benchmarks/events.py --trace` tabulates to see which part of a round grows during a long run.
TRACE_ENV = "AISLE_STREAM_TRACE"
RATE_WINDOW_S = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ROW_SCHEMA = {**EVENT_SCHEMA, "timestamp": pl.Int64}  # a stream row: the time in microseconds since the epoch

# KEYS[1] = the stream; ARGV[1] = how many hours a mark counts, ARGV[2] = the prefix, ARGV[3] = the live history
# length, ARGV[4] = the hour now, ARGV[5] = n, ARGV[6..n+5] = the events' keys, ARGV[n+6..2n+5] = the events (JSON),
# ARGV[2n+6..3n+5] = their users, then pairs (event index, live history entry) in time order. Read first (the
# marks: `aisle.serve.marks`, one hash per shopper), then XADD, then the marks: an error before the XADD writes
# nothing, and Redis refuses a script that would write while it is out of memory before it starts, so an event is
# never marked that is not in the stream. The new events with an item join their users' live histories
# (<prefix>h:<user>, `aisle.serve.state.RedisState`, in time order) in the same call: one round trip per batch. The
# marks and the histories take one HMGET, one HSET and one RPUSH per user of the batch, not per event (a batch
# holding a session costs Redis fewer calls; benchmarks/events_redis.py, RESULTS.md "CPU per event on each hop").
_PUBLISH = marks.LUA + """
local n = tonumber(ARGV[5])
local p, hours, now = ARGV[2], tonumber(ARGV[1]), tonumber(ARGV[4])
local keys, users, fresh, events = {}, {}, {}, {}
for i = 1, n do
  keys[i] = ARGV[5 + i]
  users[i] = ARGV[5 + 2 * n + i]
end
local fields, dup, seen = check_marks(p, now, ARGV[4], hours, keys, users)
for i = 1, n do
  if dup[i] == 0 then
    fresh[#fresh + 1] = i
    events[#events + 1] = ARGV[5 + n + i]
  end
end
if #fresh > 0 then
  redis.call('XADD', KEYS[1], '*', 'e', '[' .. table.concat(events, ',') .. ']')
  set_marks(now, ARGV[4], hours, fields, users, fresh, seen)
  local live = {}
  for j = 3 * n + 6, #ARGV, 2 do
    local i = tonumber(ARGV[j])
    if dup[i] == 0 then
      local user = users[i]
      local mine = live[user]
      if mine then
        mine[#mine + 1] = ARGV[j + 1]
      else
        live[user] = {ARGV[j + 1]}
      end
    end
  end
  local keep = '-' .. ARGV[3]
  for user, mine in pairs(live) do
    local h = p .. 'h:' .. user
    for j = 1, #mine, 4000 do
      redis.call('RPUSH', h, unpack(mine, j, math.min(j + 3999, #mine)))
    end
    redis.call('LTRIM', h, keep, '-1')
  end
end
return dup
"""

# KEYS[1] = the stream, KEYS[2] = the erasures hash; ARGV[1] = the user. A marker entry gives the erasure its place
# in the stream: consumers drop the user's events of every entry before it.
_ERASURE = """
local id = redis.call('XADD', KEYS[1], '*', 'x', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], id)
return id
"""


def stream_key(prefix: str = "aisle:") -> str:
    return f"{prefix}stream:events"


def encode(event: dict[str, Any]) -> bytes:
    """One event as the stream carries it: a JSON array in EVENT_SCHEMA order, the time in microseconds."""
    ts = event.get("timestamp")
    us = (ts - _EPOCH) // _US if isinstance(ts, datetime) else None  # exact: a float would be off by 1 us at times
    return orjson.dumps([event.get("event_id"), event["user_id"], event.get("item_id"), event["event_type"], us,
                         event.get("session_id"), event.get("value"), event.get("query"), event.get("request_id")])


def decode(payloads: list[str | bytes]) -> pl.DataFrame:
    """The events of stream entries (each a JSON array of encoded events) as an EVENT_SCHEMA frame."""
    return decode_entries(payloads)[0]


def decode_entries(payloads: list[str | bytes]) -> tuple[pl.DataFrame, list[int]]:
    """`decode`, and how many events each entry held (in order): a consumer's batch becomes one frame in one pass,
    not a frame per entry (those small frames were most of a consumer's CPU). The rows go to polars as rows
    (`orient="row"`): transposing them in Python first cost as much again as decoding the JSON."""
    rows: list[list[Any]] = []
    counts: list[int] = []
    for p in payloads:
        got = orjson.loads(p)
        counts.append(len(got))
        rows += got
    try:
        frame = pl.DataFrame(rows, schema=_ROW_SCHEMA, orient="row")
    except pl.exceptions.ShapeError:
        # an entry written before a column was added (request_id) is shorter: the missing fields are null
        width = len(_ROW_SCHEMA)
        rows = [row if len(row) == width else [*row, *[None] * (width - len(row))] for row in rows]
        frame = pl.DataFrame(rows, schema=_ROW_SCHEMA, orient="row")
    return frame.with_columns(pl.col("timestamp").cast(EVENT_SCHEMA["timestamp"])), counts


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = str(entry_id).partition("-")
    return int(ms), int(seq or 0)


def _without_erased(frame: pl.DataFrame, erasures: dict[str, tuple[int, int]]) -> pl.DataFrame:
    """`frame` (with the entry position in _ms, _seq) without the events of a user from before their erasure."""
    if not erasures:
        return frame
    marks = pl.DataFrame({"user_id": list(erasures), "_ems": [e[0] for e in erasures.values()],
                          "_eseq": [e[1] for e in erasures.values()]},
                         schema={"user_id": pl.String, "_ems": pl.Int64, "_eseq": pl.Int64})
    joined = frame.join(marks, on="user_id", how="left", maintain_order="left")
    erased = (pl.col("_ms") < pl.col("_ems")) | ((pl.col("_ms") == pl.col("_ems")) & (pl.col("_seq") < pl.col("_eseq")))
    return joined.filter(~erased.fill_null(False)).drop("_ems", "_eseq")


class EventStream:
    """The API's side (async): publish accepted events, report the stream's figures. `state` is the worker's
    `RedisState`: the stream lives in its Redis, and a published event joins its live state in the same step."""

    def __init__(self, state: Any, seen_ttl_s: int = marks.SEEN_TTL_S) -> None:
        self.state = state
        self.r = state.r
        self.p = state.p
        self.key = stream_key(self.p)
        self.hours = marks.ttl_hours(seen_ttl_s)
        self._erasure = self.r.register_script(_ERASURE)

    async def publish(self, keys: list[str], events: list[dict[str, Any]]) -> list[bool]:
        """Mark `keys` seen (each for its event's user), append the events whose key was new to the stream and to
        their users' live histories, atomically, in one round trip; True for each duplicate."""
        if not keys:
            return []
        p = self.p.encode()
        users = [e["user_id"].encode() for e in events]
        live: list[bytes] = []
        # the live history is in time order; a batch need not be (ties keep the batch's order)
        timed = sorted((e["timestamp"], i) for i, e in enumerate(events) if e.get("item_id"))
        for ts, i in timed:
            e = events[i]
            live += [b"%d" % (i + 1), orjson.dumps([e["item_id"], e["event_type"], (ts - _EPOCH) // _US])]
        out = await self.state.script(_PUBLISH, [self.key.encode()],
                                      [b"%d" % self.hours, p, b"%d" % self.state.history_length,
                                       b"%d" % marks.hour_now(), b"%d" % len(keys), *(k.encode() for k in keys),
                                       *(encode(e) for e in events), *users, *live])
        return [bool(d) for d in out]

    async def record_erasure(self, user_id: str) -> str:
        """Mark the user erased at the stream's current end: consumers drop their events of every entry before it
        (those not yet in the store), and delete what a consumer wrote while the erasure happened."""
        return str(await self._erasure(keys=[self.key, f"{self.p}stream:erasures"], args=[user_id]))

    async def durability(self) -> str | None:
        """Redis' AOF setting ('always', 'everysec', 'no') or None where AOF is off (or CONFIG is not allowed)."""
        try:
            aof = await self.r.config_get("appendonly")
            if str(aof.get("appendonly", "no")) != "yes":
                return None
            return str((await self.r.config_get("appendfsync")).get("appendfsync"))
        except Exception:
            return None

    async def figures(self) -> dict[str, float]:
        now = int(time.time())
        pipe = self.r.pipeline(transaction=False)
        pipe.xlen(self.key)
        pipe.get(f"{self.p}stream:consumed")
        pipe.get(f"{self.p}stream:redelivered")
        pipe.mget([f"{self.p}stream:rate:{s}" for s in range(now - RATE_WINDOW_S, now)])
        lag, consumed, redelivered, rate = await pipe.execute()
        return {"lag_entries": int(lag), "consumed_events": int(consumed or 0),
                "redelivered_entries": int(redelivered or 0),
                "consumed_events_per_s": sum(int(x or 0) for x in rate) / RATE_WINDOW_S}

    async def prometheus(self) -> bytes:
        f = await self.figures()
        lines = [
            "# HELP aisle_stream_lag_entries Event stream entries not yet written to the store and acknowledged",
            "# TYPE aisle_stream_lag_entries gauge", f"aisle_stream_lag_entries {f['lag_entries']}",
            "# HELP aisle_stream_consumed_events_total Events written from the stream to the store (all consumers)",
            "# TYPE aisle_stream_consumed_events_total counter",
            f"aisle_stream_consumed_events_total {f['consumed_events']}",
            f"# HELP aisle_stream_consumed_events_per_second Events consumed per second over the last "
            f"{RATE_WINDOW_S} s (all consumers)",
            "# TYPE aisle_stream_consumed_events_per_second gauge",
            f"aisle_stream_consumed_events_per_second {f['consumed_events_per_s']}",
            "# HELP aisle_stream_redelivered_entries_total Entries claimed from a consumer that did not acknowledge "
            "them (and written again)",
            "# TYPE aisle_stream_redelivered_entries_total counter",
            f"aisle_stream_redelivered_entries_total {f['redelivered_entries']}",
        ]
        return ("\n".join(lines) + "\n").encode()


def _append_events(store: Any, frame: pl.DataFrame, fresh: bool) -> None:
    store.append_events(frame, fresh=fresh)


def _append_impressions(store: Any, frame: pl.DataFrame, fresh: bool) -> None:
    store.append_impressions(frame)  # keyed by (request, position) and checked within its time span already


class Consumer:
    """Stream -> store (synchronous; run it in a thread or a process). `store` is a context-manager factory
    giving the store for one unit of work (`StoreSink.locked`)."""

    def __init__(self, redis_url: str, store: Any, *, name: str | None = None, prefix: str = "aisle:",
                 count: int = 200, block_ms: int = 1000, claim_idle_s: float = 30.0,
                 forget_idle_s: float = 3600.0, stream: str = "events", pace_s: float = 0.0) -> None:
        """`stream`: "events" (`aisle:stream:events`, what POST /events accepted) or "impressions"
        (`aisle:impressions`, the served lists the workers log; `aisle.serve.impressions`). `pace_s`: after a
        round that wrote something but less than `count` entries, the next starts `pace_s` after this one started,
        so a busy stream is written in fewer, larger store transactions (each holds at least `pace_s` of traffic):
        a DuckDB transaction costs tens of ms of CPU whatever its size (opening the file, the anti-join against the
        stored keys, the checkpoint at close; benchmarks/events_store_rounds.py). Counted from the start, not the
        end: a round that took `pace_s` or longer is followed at once, so what arrived meanwhile does not wait a
        pause on top. A full round goes on at once too (more is waiting)."""
        import redis

        from aisle.serve import impressions

        self.r = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=max(5.0, block_ms / 500),
                                      socket_connect_timeout=5.0)
        self.store = store
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident() % 100_000}"
        self.p = prefix
        if stream == "events":
            self.key, self.field, self.counters = stream_key(prefix), "e", f"{prefix}stream"
            self._decode, self._append = decode, _append_events
        elif stream == impressions.IMPRESSIONS_STREAM:
            self.key = self.counters = f"{prefix}{impressions.IMPRESSIONS_STREAM}"
            self.field, self._decode, self._append = "i", impressions.decode, _append_impressions
        else:
            raise ValueError(f"unknown stream {stream!r} (events, impressions)")
        self.pace_s = pace_s
        self.full = False  # the last round read `count` entries
        self.count, self.block_ms, self.claim_idle_ms = count, block_ms, int(claim_idle_s * 1000)
        self._claim_at = 0.0
        self.forget_idle_ms = int(forget_idle_s * 1000)
        self._forget_at = 0.0
        self._group_ready = False
        self._own = True  # first read back what this name holds (a restart under the same --name)
        self.consumed = 0
        self.redelivered = 0
        self.dropped = 0
        trace = os.environ.get(TRACE_ENV)
        self._trace = open(trace, "ab", buffering=0) if trace else None  # noqa: SIM115 (closed by close())
        self._times: dict[str, float] = {}
        self._lap_at = (0.0, 0.0)

    def ensure_group(self) -> None:
        import redis

        try:
            self.r.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def step(self) -> int:
        """One round: claim the entries of dead consumers (at most every claim_idle_s / 2), else read new ones;
        write their events to the store; acknowledge them. Returns the events written (0 when none waited)."""
        if not self._group_ready:
            self.ensure_group()
        self._times = {"start": time.time()}
        self._lap_at = (time.perf_counter(), time.thread_time())
        entries: list[tuple[str, dict[str, str]]] = []
        claimed = 0
        fresh = False  # entries delivered before (this consumer's own, or claimed) may be in the store already
        if self._own:  # entries this consumer took and did not acknowledge (its last write failed)
            got = self.r.xreadgroup(GROUP, self.name, {self.key: "0"}, count=self.count)
            entries = [e for e in got[0][1] if e and e[1]] if got else []
            self._own = bool(entries)
        now = time.monotonic()
        if now >= self._forget_at:
            self._forget_at = now + 60.0
            self.forget_gone()
        if not entries and now >= self._claim_at:
            self._claim_at = now + self.claim_idle_ms / 2000
            got = self.r.xautoclaim(self.key, GROUP, self.name, min_idle_time=self.claim_idle_ms, start_id="0-0",
                                    count=self.count)
            entries = [e for e in got[1] if e and e[1]]
            claimed = len(entries)
            if claimed:
                self._claim_at = now  # more may wait: claim again next round
        if not entries:
            got = self.r.xreadgroup(GROUP, self.name, {self.key: ">"}, count=self.count, block=self.block_ms)
            entries = [e for e in got[0][1] if e and e[1]] if got else []
            fresh = True
        self.full = len(entries) >= self.count
        if not entries:
            return 0
        self._lap("read")
        frame, dropped = self._write(entries, fresh=fresh)
        ids = [entry_id for entry_id, _ in entries]
        second = int(time.time())
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.key, GROUP, *ids)
        pipe.xdel(self.key, *ids)
        pipe.incrby(f"{self.counters}:consumed", frame.height)
        pipe.incrby(f"{self.counters}:rate:{second}", frame.height)
        pipe.expire(f"{self.counters}:rate:{second}", 4 * RATE_WINDOW_S)
        if claimed:
            pipe.incrby(f"{self.counters}:redelivered", claimed)
        pipe.execute()
        self._lap("ack")
        self.consumed += frame.height
        self.redelivered += claimed
        self.dropped += dropped
        self._times.update(entries=len(entries), events=frame.height)
        return frame.height

    def _lap(self, part: str) -> None:
        """Record the wall and CPU seconds (this thread's: DuckDB with one thread runs in it) since the last lap as
        `part` of this round's trace line (`TRACE_ENV`)."""
        if self._trace is not None:
            wall, cpu = time.perf_counter(), time.thread_time()
            self._times[part], self._times[f"{part}_cpu"] = wall - self._lap_at[0], cpu - self._lap_at[1]
            self._lap_at = (wall, cpu)

    def _log_round(self, paused: float) -> None:
        """One line of the trace (`TRACE_ENV`) for the round just done, with the pause after it."""
        if self._trace is not None and "events" in self._times:
            self._trace.write(orjson.dumps({"consumer": self.name, "stream": self.field, **self._times,
                                            "pause": round(paused, 4)}) + b"\n")

    def forget_gone(self) -> list[str]:
        """Remove from the group the consumers that hold nothing and were not heard of for `forget_idle_s` (every
        restart of a worker leaves its old name behind); a live one reads every second, and XREADGROUP would
        add it again anyway. Returns the names removed."""
        gone = [c["name"] for c in self.r.xinfo_consumers(self.key, GROUP)
                if int(c["pending"]) == 0 and int(c["idle"]) >= self.forget_idle_ms and c["name"] != self.name]
        for name in gone:
            self.r.xgroup_delconsumer(self.key, GROUP, name)
        return gone

    def _erasures(self, users: list[str | None]) -> dict[str, tuple[int, int]]:
        users = [u for u in users if u is not None]  # an impression of a list served to nobody in particular
        if not users:
            return {}
        key = f"{self.p}stream:erasures"
        # most rounds meet few erasure records (`compact_redis` forgets the old ones): read them rather than ask
        # for every user of the batch (thousands of arguments, twice a round)
        if self.r.hlen(key) <= len(users):
            records = self.r.hgetall(key)
            return {u: _id(records[u]) for u in set(users) if u in records}
        got = self.r.hmget(key, users)
        return {u: _id(e) for u, e in zip(users, got, strict=True) if e}

    def _write(self, entries: list[tuple[str, dict[str, str]]], *, fresh: bool = False) -> tuple[pl.DataFrame, int]:
        """Write the events of `entries` to the store, without those of users erased after the entry (the erasure
        came first); afterwards, a user erased while this was written is deleted from the store again. `fresh`:
        the entries were never delivered before (`StoreBackend.append_events`). Returns the frame written and the
        number of events dropped."""
        parts = [(_id(entry_id), fields[self.field]) for entry_id, fields in entries if self.field in fields]
        if not parts:
            return self._decode([]), 0
        payloads = [payload for _, payload in parts]
        if self.field == "i":
            # a worker flushes the lists it served up to a second later, maybe after the shopper was erased: an
            # impression's place in time is when it was served, not when its entry reached the stream
            frame = self._decode(payloads).with_columns(pl.col("timestamp").dt.epoch("ms").alias("_ms"),
                                                        pl.lit(0, pl.Int64).alias("_seq"))
        else:  # an event's place is its entry's
            frame, counts = decode_entries(payloads)
            frame = frame.with_columns(
                pl.Series("_ms", np.repeat([pos[0] for pos, _ in parts], counts), dtype=pl.Int64),
                pl.Series("_seq", np.repeat([pos[1] for pos, _ in parts], counts), dtype=pl.Int64))
        offered = frame.height
        users = frame["user_id"].unique().to_list()
        before = self._erasures(users)
        frame = _without_erased(frame, before)
        dropped = offered - frame.height
        self._lap("prepare")
        with self.store() as store:
            self._lap("open")
            if frame.height:
                self._append(store, frame.drop("_ms", "_seq"), fresh)
            self._lap("append")
        self._lap("close")
        after = self._erasures(users)
        late = {u: e for u, e in after.items() if before.get(u) != e}
        if late and _without_erased(frame, late).height < frame.height:  # erased while this was written
            with self.store() as store:
                for user in late:
                    store.delete_user(user)
        self._lap("erasures")
        return frame.drop("_ms", "_seq"), dropped

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; a failure (store or Redis down) is logged and retried after a pause, the
        entries it held stay pending and are claimed again."""
        failures = 0
        while not stop.is_set():
            try:
                started = time.monotonic()
                paused = 0.0
                if self.step() and self.pace_s and not self.full:
                    # pace from the round's start, not its end: a round that took `pace_s` or longer (a slow
                    # store write, a busy CPU) is followed at once, so what waited meanwhile is not left for
                    # another pause on top (the lag then rises with the write time, not 1.5 times it)
                    paused = max(0.0, self.pace_s - (time.monotonic() - started))
                    stop.wait(paused)
                self._log_round(paused)
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("stream consumer %s: %s: %s (retrying)", self.name, type(exc).__name__, exc)
                stop.wait(min(5.0, 0.2 * 2 ** min(failures, 5)))
                self._own = True  # what this consumer held is pending to it: write it first

    def close(self) -> None:
        self.r.close()
        if self._trace is not None:
            self._trace.close()


def compact_redis(redis_url: str, prefix: str = "aisle:", *, impression_grace_s: float = 3600.0) -> dict[str, int]:
    """Let erased users' bytes leave Redis' files: forget the erasure records that no entry still needs and
    rewrite the append-only file (BGREWRITEAOF: the new AOF holds only the live data set, not the history of
    commands, in which erased events were XADDed). A record is needed while the events stream or the impressions
    stream still holds an entry from before the erasure (a consumer could still meet that user's rows), and for
    `impression_grace_s` after it: a worker buffers the lists it served before it adds them to the impressions
    stream (a second normally; longer while Redis is unreachable), placed at the time they were served. The live
    state's `erased` set keeps the ids (no events, no text): it hides the user's history in bundles trained
    before the erasure. Returns the records forgotten and whether a rewrite started."""
    import redis

    from aisle.serve.impressions import IMPRESSIONS_STREAM

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        records = f"{prefix}stream:erasures"
        firsts = [r.xrange(key, count=1) for key in (stream_key(prefix), f"{prefix}{IMPRESSIONS_STREAM}")]
        oldest = min((_id(f[0][0]) for f in firsts if f), default=None)
        settled = (int((time.time() - impression_grace_s) * 1000), 0)
        done = [user for user, at in r.hgetall(records).items()
                if (oldest is None or _id(at) < oldest) and _id(at) < settled]
        if done:
            r.hdel(records, *done)
        rewrite = 0
        if str(r.config_get("appendonly").get("appendonly")) == "yes":
            try:
                r.bgrewriteaof()
                rewrite = 1
            except redis.ResponseError as exc:  # one is already running (or scheduled): it serves as well
                log.info("BGREWRITEAOF: %s", exc)
                rewrite = 1
        return {"erasure_records_forgotten": len(done), "aof_rewrite": rewrite}
    finally:
        r.close()


__all__ = ["GROUP", "Consumer", "EventStream", "compact_redis", "decode", "decode_entries", "encode", "stream_key"]
