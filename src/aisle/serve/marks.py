"""Duplicate-detection marks in Redis: one hash per shopper, not one key per event.

`POST /events` refuses an event its shopper already sent (same `event_id`, else user|item|type|timestamp|query)
within `SEEN_TTL_S` (7 days). The marks that remember this are most of Redis' memory under a steady stream of
events, and every AOF rewrite (a fork that writes the whole data set) walks them, so their size is the stream's
cost: the old layout, a `<prefix>seen:<key>` string with a TTL per event plus the key's copy in the shopper's
`<prefix>seenby:<user>` set (for erasure), took about 200 bytes per event (benchmarks/RESULTS.md).

Here a shopper's marks are the fields of one hash, `<prefix>marks:<user>`:

* the field is the first 16 hex digits of the event key's SHA-1 (`redis.sha1hex`, in the script): a fixed 16 bytes
  whatever the key's length (a key without an id holds the search text, and a field over 64 bytes would turn the
  whole hash from Redis' compact listpack into a hash table); two keys of one shopper sharing 64 bits of digest
  is a ~1e-11 chance at 10,000 marks, and would answer the second as a duplicate (counted, never silent);
* the value is the hour (since the epoch) the mark was written: a mark counts while the current hour is at most
  its hour + ceil(TTL / 1 h), so it lives between TTL and TTL + 1 h: duplicate detection never shorter than the
  TTL (a mark is never forgotten early), at most an hour longer;
* the hash expires at the end of the hour TTL + 1 h after the shopper's last accepted event (EXPIREAT, set on the
  shopper's first write of each hour), so it outlives every mark in it, and the marks of a shopper who stops leave
  with the key; a shopper who never stops for 7 days keeps the key, so once the hash is past
  2 x `_PRUNE_FLOOR` fields, a write that doubles it since the last pruning drops the fields past their time
  (amortised: a pruning reads the hash once per doubling, so a constant cost per mark, and the hash holds at
  most about twice the shopper's marks of the last TTL). The size is looked at (HLEN) only on a write one of whose
  new fields starts with '0' (the digests are uniform: about once per 16 marks), so a shopper's single-event
  writes mostly skip it, and a doubling is noticed a few tens of marks late at most;
* erasing the shopper deletes one key (the old layout needed the index set to find theirs).

A duplicate is thereby per shopper: the same `event_id` sent by two shoppers is accepted for each (the old layout
refused the second). The store keys events by `event_id` alone, so it keeps one of them: PostgreSQL's unique
index drops the second, a DuckDB consumer drops it when the two carry the same time (its first read compares the
batch with stored events of the batch's time span only: `aisle.store.embedded.Store.append_events`) and stores it
a second time otherwise. Event ids are meant to be unique (a UUID per event); a client whose ids repeat across
shoppers should send none and let the natural key, which holds the user, identify the event.

Marks of the old layout (written before this version) are honoured until they expire: a shopper who has them has
their index set `<prefix>seenby:<user>` (it outlives each of its keys: its TTL was refreshed on every write), so
the check looks up the old string keys of a batch's events only for the shoppers whose index set existed when
their hash was made (one EXISTS per new hash; the hash's bookkeeping field keeps that window, TTL + 1 h, so the
check costs nothing for everyone else and nothing at all a week after the upgrade). An old key counts while it
exists (its own TTL) and for the shopper whose index holds it: per shopper, as above.
Erasure deletes both layouts.
"""

from __future__ import annotations

import math
import time

SEEN_TTL_S = 7 * 24 * 3600
_PRUNE_FLOOR = 128  # redis.conf's hash-max-listpack-entries: a hash under twice this is never pruned


def ttl_hours(ttl_s: int = SEEN_TTL_S) -> int:
    """How many hours after the hour it was written a mark still counts."""
    return max(1, math.ceil(ttl_s / 3600))


def hour_now() -> int:
    return int(time.time() // 3600)


def marks_key(prefix: str, user: str) -> str:
    return f"{prefix}marks:{user}"


# Lua shared by the scripts that check and set marks (the stream's publish script, `RedisState.mark_seen`).
# `check_marks(p, now, now_s, hours, keys, users)`: each event's field, whether it is a duplicate (marked in either
# layout, or repeated earlier in the batch by the same shopper), and what the check read of each shopper's hash;
# `set_marks(now, now_s, hours, fields, users, fresh, seen)` writes the fields of the events `fresh` (indexes), the
# hour `now` as the string `now_s` (a Lua number would be formatted again for every field).
# A shopper of the batch costs one HMGET and one HSET. The hash's own bookkeeping is one short field, 'x' (never
# 16 characters, the marks' length), written first so that it sits at the head of the listpack (a listpack lookup
# scans from the head; a field that is absent costs a scan of the whole hash): the hour of the hash's last
# EXPIREAT (one EXPIREAT per shopper per hour, not per write), followed by ':' and the hour until which marks of
# the old layout may exist for this shopper, where they may (found when the hash is made: one EXISTS per new
# hash). Its size after the last pruning, 'n', is read only when the sampled HLEN says a pruning may be due.
# The script's own work is most of Redis' CPU per event (benchmarks/events_redis.py counts it), so the Lua is
# written for few allocations: no string built per event but the digest, one table per shopper.
LUA = """
local function check_marks(p, now, now_s, hours, keys, users)
  local fields, groups, dup, seen = {}, {}, {}, {}
  for i = 1, #keys do
    fields[i] = string.sub(redis.sha1hex(keys[i]), 1, 16)
    local g = groups[users[i]]
    if g then
      g[#g + 1] = i
    else
      groups[users[i]] = {i}
    end
  end
  for user, idx in pairs(groups) do
    local h = p .. 'marks:' .. user
    local m, mine = {h = h}, {}
    for j = 1, #idx, 4000 do
      local last = math.min(j + 3999, #idx)
      local args = {'x'}
      for t = j, last do
        args[t - j + 2] = fields[idx[t]]
      end
      local got = redis.call('HMGET', h, unpack(args))
      if j == 1 then
        m.x = got[1]
      end
      for t = 2, #args do
        local i, v = idx[j + t - 2], got[t]
        if (v and tonumber(v) + hours >= now) or mine[args[t]] then
          dup[i] = 1
        else
          dup[i] = 0
          mine[args[t]] = true
        end
      end
    end
    if m.x ~= now_s then
      if m.x then
        local colon = string.find(m.x, ':', 1, true)
        if colon then
          m.o = tonumber(string.sub(m.x, colon + 1))
        end
      elseif redis.call('EXISTS', p .. 'seenby:' .. user) == 1 then
        m.o = now + hours + 1
      end
      if m.o and m.o < now then
        m.o = nil
      end
    end
    if m.o then
      local index, old = p .. 'seenby:' .. user, {}
      for j = 1, #idx do
        old[j] = p .. 'seen:' .. keys[idx[j]]
      end
      for j = 1, #old, 4000 do
        local got = redis.call('MGET', unpack(old, j, math.min(j + 3999, #old)))
        local kept = redis.call('SMISMEMBER', index, unpack(old, j, math.min(j + 3999, #old)))
        for t = 1, #got do
          if got[t] and kept[t] == 1 then
            dup[idx[j + t - 1]] = 1
          end
        end
      end
    end
    seen[user] = m
  end
  return fields, dup, seen
end

local function set_marks(now, now_s, hours, fields, users, fresh, seen)
  local groups = {}
  for _, i in ipairs(fresh) do
    local g = groups[users[i]]
    if g then
      g[#g + 1] = fields[i]
      g[#g + 1] = now_s
    else
      local m = seen[users[i]]
      if m.x ~= now_s then
        m.expire = true
        groups[users[i]] = {'x', m.o and (now_s .. ':' .. m.o) or now_s, fields[i], now_s}
      else
        groups[users[i]] = {fields[i], now_s}
      end
    end
  end
  local expire_at = tostring((now + hours + 2) * 3600)
  for user, g in pairs(groups) do
    local m = seen[user]
    local sample = false
    for j = 1, #g, 2 do
      if string.byte(g[j]) == 48 then
        sample = true
        break
      end
    end
    for j = 1, #g, 4000 do
      redis.call('HSET', m.h, unpack(g, j, math.min(j + 3999, #g)))
    end
    if m.expire then
      redis.call('EXPIREAT', m.h, expire_at)
    end
    local size = sample and redis.call('HLEN', m.h) or 0
    if size > 2 * PRUNE_FLOOR then
      if size > 2 * math.max(tonumber(redis.call('HGET', m.h, 'n')) or 0, PRUNE_FLOOR) then
        local all, stale, kept = redis.call('HGETALL', m.h), {}, 0
        for j = 1, #all, 2 do
          if #all[j] == 16 then
            if tonumber(all[j + 1]) + hours < now then
              stale[#stale + 1] = all[j]
            else
              kept = kept + 1
            end
          end
        end
        for j = 1, #stale, 4000 do
          redis.call('HDEL', m.h, unpack(stale, j, math.min(j + 3999, #stale)))
        end
        redis.call('HSET', m.h, 'n', tostring(kept))
      end
    end
  end
end
""".replace("PRUNE_FLOOR", str(_PRUNE_FLOOR))
