"""What a stream consumer's round costs in the DuckDB store as the store grows: the duplicate check against every
stored key, against the stored events of the round's time span only (`append_events(..., fresh=True)`), and, for
the record, a primary-key (ART) index on the key hash with `INSERT ... ON CONFLICT DO NOTHING`.

    .venv/bin/python benchmarks/event_dedupe.py --sizes 0,1000000,10000000
    .venv/bin/python benchmarks/event_dedupe.py --sizes 0,10000000 --art     # adds the ART index (slow to build)

For each size: a store holding that many events (ids `pre-N`, one a millisecond, older than the rounds' events),
then `--rounds` rounds as the consumer runs them: open the file, append `--round` new events plus 1,000 of the
previous round (a redelivered entry), close. Prints seconds per round (open + append + close) and the file's
size; every round must insert exactly the new events.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

import machine
from aisle.store import Store
from aisle.types import EVENT_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_GEN = """SELECT NULL::VARCHAR AS natural_key, 'pre-' || i AS event_id, 'u' || (i % 5000) AS user_id,
          'i' || (i % 2000) AS item_id, 'view' AS event_type,
          TIMESTAMPTZ '2026-01-01' + to_milliseconds(i) AS timestamp,
          NULL::VARCHAR AS session_id, NULL::DOUBLE AS value, NULL::VARCHAR AS query, NULL::VARCHAR AS request_id
          FROM range({0}, {1}) t(i)"""


def events(first: int, last: int) -> pl.DataFrame:
    """Events `first`..`last`-1 as the API posts them: distinct ids, one a millisecond."""
    k = np.arange(first, last)
    return pl.DataFrame({
        "event_id": [f"pre-{i}" for i in k], "user_id": [f"u{i % 5000}" for i in k],
        "item_id": [f"i{i % 2000}" for i in k], "event_type": "view",
        "timestamp": pl.Series([T0 + timedelta(milliseconds=int(i)) for i in k]),
    }).pipe(lambda f: f.with_columns(pl.col("timestamp").cast(EVENT_SCHEMA["timestamp"])))


def prefill(path: Path, size: int, *, art: bool) -> None:
    """`size` stored events, written by SQL in 1-million-row steps (the Store's own schema, or with `art` a table
    whose key hash is its primary key)."""
    with Store(path):
        pass  # the schema (and its migrations) as the store makes it
    con = duckdb.connect(str(path))
    try:
        if art:
            con.execute("ALTER TABLE events ADD COLUMN key UHUGEINT")
            con.execute("CREATE UNIQUE INDEX events_key ON events (key)")
        cols = "natural_key, event_id, user_id, item_id, event_type, timestamp, session_id, value, query, request_id"
        for a in range(0, size, 1_000_000):
            gen = _GEN.format(a, min(size, a + 1_000_000))
            if art:
                con.execute(f"INSERT INTO events ({cols}, key) SELECT *, md5_number(event_id) FROM ({gen})")
            else:
                con.execute(f"INSERT INTO events ({cols}) {gen}")
    finally:
        con.close()


def round_art(path: Path, frame: pl.DataFrame) -> int:
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        before = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        con.register("_b", frame.to_arrow())
        con.execute("""INSERT INTO events (event_id, user_id, item_id, event_type, timestamp, key)
                       SELECT event_id, user_id, item_id, event_type, timestamp, md5_number(event_id) FROM _b
                       ON CONFLICT DO NOTHING""")
        return int(con.execute("SELECT count(*) FROM events").fetchall()[0][0] - before)
    finally:
        con.close()


def round_store(path: Path, frame: pl.DataFrame, fresh: bool) -> int:
    with Store(path) as store:
        return store.append_events(frame, fresh=fresh).inserted


def measure(size: int, mode: str, rounds: int, per_round: int, folder: Path) -> dict[str, Any]:
    path = folder / f"{mode}-{size}.duckdb"
    t = time.perf_counter()
    prefill(path, size, art=mode == "art")
    built = time.perf_counter() - t
    took = []
    for r in range(rounds):
        first = size + r * per_round
        frame = pl.concat([events(first, first + per_round), events(max(0, first - 1_000), first)])
        t = time.perf_counter()
        inserted = round_art(path, frame) if mode == "art" else round_store(path, frame, fresh=mode == "span")
        took.append(time.perf_counter() - t)
        assert inserted == per_round, (mode, size, inserted)
    out = {"stored": size, "check": mode, "round_s": [round(x, 3) for x in took],
           "median_round_s": round(float(np.median(took)), 3), "build_s": round(built, 1),
           "file_mb": round(path.stat().st_size / 2**20)}
    path.unlink()
    Path(str(path) + ".wal").unlink(missing_ok=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="0,1000000,10000000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round", type=int, default=100_000, help="new events per round (1,000 consumer entries)")
    ap.add_argument("--art", action="store_true", help="also measure a primary-key (ART) index")
    ap.add_argument("--out")
    args = ap.parse_args()
    modes = ["full", "span", *(["art"] if args.art else [])]
    rows = []
    with tempfile.TemporaryDirectory(prefix="aisle-dedupe-") as folder:
        for size in (int(x) for x in args.sizes.split(",")):
            for mode in modes:
                rows.append(measure(size, mode, args.rounds, args.round, Path(folder)))
                print(json.dumps(rows[-1]), flush=True)
    result = {"rows": rows, "load_average": os.getloadavg(), "machine": machine.describe()}
    print(f"{'stored':>12} {'check':>6} {'median round s':>15} {'file MB':>8}")
    for r in rows:
        print(f"{r['stored']:>12,} {r['check']:>6} {r['median_round_s']:>15} {r['file_mb']:>8}")
    print(result["machine"], "load", result["load_average"])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
