"""A throwaway redis-server for tests and benchmarks: a free 127.0.0.1 port, its own folder, stopped on exit.

One way to start Redis everywhere (the serving tests, the stream's kill test, benchmarks/load.py and events.py), so
a change of how it is started (AOF, fsync policy, bind address) is made once. Skips with a reason under pytest when
`redis-server` is absent (`apt-get install redis-server`; `.ci/run` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: set[int] = set()


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on, for a server the caller starts next.

    Why not bind to port 0: that port comes from the kernel's ephemeral range, the same range every outgoing
    connection (to PostgreSQL, Redis, a worker) draws its local port from, so between this call and the server's
    bind another test's client could take it ("Address already in use", seen in CI). Ports outside that range are
    never handed out by the kernel, so only another explicit bind can collide: each pytest-xdist worker draws from
    its own slice, and a port is never handed out twice in one process."""
    import os
    import random

    low, high = _ephemeral_range()
    start, stop = (10000, min(low, 32768)) if low > 12000 else (high + 1, 65535)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    slot = int(worker) if worker.isdigit() else 0
    width = max((stop - start) // 16, 100)
    first = start + (slot % 16) * width
    candidates = list(range(first, min(first + width, stop)))
    random.Random(os.getpid()).shuffle(candidates)
    for port in candidates:
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free 127.0.0.1 port in {first}-{first + width}")


def start_redis(folder: Path, port: int, *, aof: bool = True, fsync: str = "always") -> subprocess.Popen[bytes]:
    """Start redis-server on 127.0.0.1:`port` with its files in `folder`; return once it accepts connections.

    `aof` turns the append-only file on (the durable event stream needs it), `fsync` is its appendfsync policy."""
    exe = shutil.which("redis-server")
    if exe is None:
        import pytest

        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes" if aof else "no", "--appendfsync", fsync, "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port} (exit code {proc.poll()})")


@contextmanager
def redis_server(folder: Path | None = None, *, aof: bool = True, fsync: str = "always") -> Iterator[str]:
    """Start a redis-server, yield its URL (`redis://127.0.0.1:PORT/0`), stop it (and its folder if made here)."""
    made = folder is None
    folder = Path(tempfile.mkdtemp(prefix="aisle-redis-")) if folder is None else folder
    port = free_port()
    proc = start_redis(folder, port, aof=aof, fsync=fsync)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if made:
            shutil.rmtree(folder, ignore_errors=True)
