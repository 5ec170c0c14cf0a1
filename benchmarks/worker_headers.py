"""What the `X-Aisle-Worker` / `X-Aisle-Version` response headers cost a worker, per request.

    .venv/bin/python benchmarks/worker_headers.py [--requests 20000] [--rounds 40]

Runs the serving middleware (`aisle.serve.app.ServeMiddleware`, the one that stamps the headers) around an ASGI app
that answers a fixed 200 at once, on one event loop, with the headers on (what `aisle serve` does) and off (the
identity list emptied), in short alternating rounds (the machine is shared: alternating, both meet the same share of
it), and compares the medians. The difference is the whole cost of the headers on the request path;
it is set against the worker CPU one recommendation costs end to end (benchmarks/RESULTS.md, load.py closed
loop). Why not load.py itself: the difference is below what its requests/s resolve on 2 shared cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aisle.config import Settings
from aisle.serve.app import ServeMiddleware
from aisle.serve.services import Services


async def _answer(_scope: Any, _receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _run(mw: ServeMiddleware, n: int) -> float:
    """Seconds per request over `n` requests through the middleware."""
    scope = {"type": "http", "method": "GET", "path": "/trending", "headers": [(b"host", b"x")]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        return None

    t0 = time.perf_counter()
    for _ in range(n):
        await mw(scope, receive, send)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000, help="Requests per round.")
    ap.add_argument("--rounds", type=int, default=40, help="Rounds of each, alternating.")
    args = ap.parse_args()
    svc = Services(Settings(bundle=Path(tempfile.mkdtemp()) / "none"))
    mw = ServeMiddleware(_answer, svc)
    stamped = [(b"x-aisle-worker", b"123456"), (b"x-aisle-version", b"2026-12-06T03:58:21+00:00/52390b7a763f0c4a")]
    on: list[float] = []
    off: list[float] = []
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_run(mw, 10_000))  # warm-up
    for _ in range(args.rounds):
        svc.identity = []
        off.append(loop.run_until_complete(_run(mw, args.requests)))
        svc.identity = stamped
        on.append(loop.run_until_complete(_run(mw, args.requests)))
    # alternating rounds meet the same share of the machine (it is shared): the medians' difference is the cost
    med_on, med_off = statistics.median(on) * 1e6, statistics.median(off) * 1e6
    print(f"machine: {machine.describe()}")
    print(f"middleware per request, median of {args.rounds} alternating rounds of {args.requests:,}: headers off "
          f"{med_off:.2f} us, on {med_on:.2f} us, cost {med_on - med_off:+.2f} us per request "
          f"(fastest rounds {min(off) * 1e6:.2f} / {min(on) * 1e6:.2f} us)")

if __name__ == "__main__":
    main()
