"""The Redis log of catalog upserts (`PUT /items`), and its trimming once bundles carry the upserted items.

Keys (prefix `aisle:`): `items:version` counts upsert batches; `items:log` is a list with one entry per batch (JSON
records), and `items:log:base` says how many of the oldest batches were trimmed, so entry `i` is batch `base + i + 1`;
`items` is a hash of each id's last record (read only when the log does not match the version: state written by an
Aisle without the log).

Why a log can be trimmed, and when. A server worker applies the batches after the catalog version it holds, on top of
the bundle it serves; a worker that starts holds none and applies every batch in the log. A batch may leave the log
once every bundle a worker could still load has its items: `aisle worker` records, with each version it publishes,
the catalog version its catalog covers (`covered`: checked item by item against the records, since a server writes
an upsert to the store after Redis and a version may have read the store in between), and trims up to the lowest
coverage among the registry's versions (a version published by hand records none: its catalog is checked against
the log as it is when trimming, `registry_coverage`), so the current one, the rollback
target and any version promoted by hand all hold what was trimmed. A worker that was running keeps the upserts it
applied in memory and applies them to every version it loads; a worker that starts later loads a version that covers
the trimmed batches and reads the rest from the log. The log then holds the batches since the oldest version the
registry keeps (`registry_keep`), not every batch ever made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from aisle.registry import VersionInfo

PREFIX = "aisle:"

# KEYS: version, base, log; ARGV[1]: the caller's version. -> {current, base, the entries after the caller's version}
ITEMS_SINCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = tonumber(redis.call('GET', KEYS[2]) or '0')
local since = tonumber(ARGV[1])
if current <= since then return {current, base, {}} end
local from = since - base
if from < 0 then from = 0 end
return {current, base, redis.call('LRANGE', KEYS[3], from, -1)}
"""

# KEYS: base, log, hash; ARGV[1]: trim the batches up to this version. Drops their entries, advances the base, and
# removes from the hash the ids no kept batch names (the hash then mirrors the log). -> {base, batches dropped}
_TRIM = """
local base = tonumber(redis.call('GET', KEYS[1]) or '0')
local upto = tonumber(ARGV[1])
if upto <= base then return {base, 0} end
local n = math.min(upto - base, redis.call('LLEN', KEYS[2]))
if n <= 0 then return {base, 0} end
local dropped = redis.call('LRANGE', KEYS[2], 0, n - 1)
redis.call('LTRIM', KEYS[2], n, -1)
redis.call('SET', KEYS[1], base + n)
local kept = {}
for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  for _, item in ipairs(cjson.decode(entry)) do kept[item['item_id']] = true end
end
for _, entry in ipairs(dropped) do
  for _, item in ipairs(cjson.decode(entry)) do
    if not kept[item['item_id']] then redis.call('HDEL', KEYS[3], item['item_id']) end
  end
end
return {base + n, n}
"""


def keys(prefix: str = PREFIX) -> dict[str, str]:
    return {"version": f"{prefix}items:version", "base": f"{prefix}items:log:base", "log": f"{prefix}items:log",
            "hash": f"{prefix}items"}


@dataclass(frozen=True)
class CatalogLog:
    """The log as one read saw it: batches `base + 1 .. version`, each a list of API item records."""

    base: int
    version: int
    batches: list[list[dict[str, Any]]]


def read_log(redis_url: str, prefix: str = PREFIX) -> CatalogLog:
    """Every batch still in the log (one script: version, base and entries agree with each other)."""
    import redis

    k = keys(prefix)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        current, base, entries = r.eval(ITEMS_SINCE, 3, k["version"], k["base"], k["log"], -1)
    finally:
        r.close()
    return CatalogLog(int(base), int(current), [json.loads(e) for e in entries])


def trim_log(redis_url: str, upto: int, prefix: str = PREFIX) -> dict[str, int]:
    """Drop the batches up to catalog version `upto` (never one after it); returns the new base and how many went."""
    import redis

    k = keys(prefix)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        base, dropped = r.eval(_TRIM, 3, k["base"], k["log"], k["hash"], int(upto))
    finally:
        r.close()
    return {"base": int(base), "dropped": int(dropped)}


def covered(catalog: pl.DataFrame | None, log: CatalogLog) -> int:
    """The catalog version up to which `catalog` (a bundle's, ITEM_SCHEMA) holds the log's upserts: every item whose
    last record among the batches up to it is in `catalog` exactly as recorded. An item the catalog lacks or has
    otherwise (its store write came after the catalog was read) stops the coverage before the batch that recorded it
    last; a later batch naming it again keeps it in the log anyway."""
    from aisle.serve.runtime import upsert_frame
    from aisle.types import ITEM_SCHEMA, conform

    if log.version != log.base + len(log.batches):  # state written without the log: nothing can be vouched for
        return log.base
    if not log.batches:
        return log.version
    last: dict[str, tuple[int, dict[str, Any]]] = {}
    for at, batch in enumerate(log.batches, start=log.base + 1):
        for record in batch:
            last[record["item_id"]] = (at, record)
    records = upsert_frame([record for _at, record in last.values()])
    if catalog is None or catalog.is_empty():
        missing = set(last)
    else:
        key = list(ITEM_SCHEMA)
        missing = set(records.select(key).join(conform(catalog, ITEM_SCHEMA).select(key), on=key, how="anti",
                                               nulls_equal=True)["item_id"].to_list())
    if not missing:
        return log.version
    return min(last[i][0] for i in missing) - 1


def registry_coverage(versions: list[VersionInfo], log: CatalogLog) -> int:
    """The catalog version every one of `versions` carries, i.e. how far the log may be trimmed: the lowest among
    them. A version `aisle worker` published records its coverage; one published by hand records none, so its
    catalog is checked against `log` now (it can vouch for no batch already trimmed: at least `log.base`)."""
    from aisle.bundle import Bundle

    def of(v: VersionInfo) -> int:
        recorded = v.decision.extra.get("catalog_version") if v.decision is not None else None
        return int(recorded) if recorded is not None else covered(Bundle.read_catalog(v.path), log)

    return min((of(v) for v in versions), default=0)


__all__ = ["ITEMS_SINCE", "CatalogLog", "covered", "keys", "read_log", "registry_coverage", "trim_log"]
