"""The processes of a running `aisle serve` and their CPU time, read from /proc, and Redis' own account of its CPU
and commands: shared by the serving benchmarks (`load.py`, `events.py`, `events_cpu.py`), which report CPU per
request or per event for each part of the server."""

from __future__ import annotations

import os
from pathlib import Path


def server_children(pid: int, consumers: bool = False) -> list[int]:
    """uvicorn's workers under `pid` (not multiprocessing's resource tracker, nor the stream consumer process of
    `aisle serve`), or with `consumers` that consumer process."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) != pid or b"resource_tracker" in cmdline:
            continue
        if (b"aisle.serve.consumers" in cmdline) == consumers:
            out.append(int(stat.parent.name))
    return out


def cpu_seconds(pids: list[int], children: bool = False) -> float:
    """User + system CPU seconds of `pids` so far (a process that is gone counts 0); with `children`, also that of
    their children that exited and were waited for (redis-server's AOF-rewrite forks: a rewrite's CPU is spent in
    a child, not in the server's own figure)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15 if children else 13]) / tick
    return total


def postgres_pid(url: str) -> int | None:
    """The postmaster of the PostgreSQL server at `url` (its data folder's postmaster.pid), None when unreadable (a
    server on another host, or another user's files)."""
    import psycopg

    try:
        with psycopg.connect(url) as con:
            folder = con.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
        return int((Path(folder) / "postmaster.pid").read_text().split()[0])
    except (OSError, psycopg.Error, ValueError):
        return None


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU seconds of `pid`, its children that exited (waited for) and its live children: a server that forks a
    process per connection (PostgreSQL's backends) as one figure. Differences of two readings count a backend that
    lived through both once (its whole life ends up in the parent's children figure when it exits)."""
    if pid is None:
        return 0.0
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                live.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return cpu_seconds([pid], children=True) + cpu_seconds(live)


def redis_pid(url: str) -> list[int]:
    """The redis-server serving `url` (it titles itself `redis-server HOST:PORT`)."""
    port = b":" + url.rsplit(":", 1)[1].split("/", 1)[0].encode()
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmd.read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if b"redis-server" in line and line.endswith(port):
            return [int(cmd.parent.name)]
    return []


def redis_figures(url: str) -> dict[str, tuple[float, float]]:
    """Redis' CPU seconds so far (user + system, all its threads) under "cpu", and per command type (calls,
    microseconds) from INFO commandstats: the commands a script runs are counted under their own names."""
    import redis

    r = redis.Redis.from_url(url)
    try:
        cpu = r.info("cpu")
        out = {"cpu": (0.0, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))}
        for name, stats in r.info("commandstats").items():
            out[name.removeprefix("cmdstat_")] = (float(stats["calls"]), float(stats["usec"]))
        return out
    finally:
        r.close()


def redis_report(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], events: int) -> str:
    """Redis' CPU per event, and each command type's calls and microseconds per event, costliest first."""
    lines = [f"redis-server: {(after['cpu'][1] - before['cpu'][1]) / events * 1e6:.1f} us CPU per event; "
             "commands per event (calls, us inside the command):"]
    rows = [(name, after[name][0] - before.get(name, (0.0, 0.0))[0], after[name][1] - before.get(name, (0.0, 0.0))[1])
            for name in after if name != "cpu"]
    for name, calls, usec in sorted(rows, key=lambda row: -row[2]):
        if calls:
            lines.append(f"  {name:<14} {calls / events:7.3f} calls {usec / events:6.2f} us")
    return "\n".join(lines)
