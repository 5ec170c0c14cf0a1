"""The living system end to end, as real processes: `aisle serve` with 2 workers and Redis state beside
`aisle worker`, on a synthetic store. A new item is added and bought; within the refresh interval plus a margin
*each* worker process's `/trending` shows it (the processes told apart by `X-Aisle-Worker`, their pid), while a
steady background load sees no failed request through the swaps; then `aisle bundles rollback` puts every worker
back on the previous version within seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from aisle.registry import Registry
from tests.integration.test_worker import _settings_env, base, shop  # noqa: F401  (fixtures)
from tests.redisserver import free_port, redis_server
from tests.serving import aisle_process, wait_ready

REFRESH_S = 2.0
MARGIN_S = 45.0  # a refresh (read, fold, save, health check) + each worker's load, on a shared 2-core machine
CLOSE = {"Connection": "close"}  # a new connection per request: the kernel spreads them over both workers
KEY = {"X-API-Key": "k"}


def _until(check: Callable[[], bool], seconds: float, what: str, log: Path | None = None) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if check():
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s\n{log.read_text()[-4000:] if log else ''}")


def _per_worker(h: httpx.Client, path: str, n: int = 2, seconds: float = 30) -> dict[str, httpx.Response]:
    """The latest answer of each of `n` worker processes to `path`, keyed by the pid in X-Aisle-Worker."""
    seen: dict[str, httpx.Response] = {}
    deadline = time.monotonic() + seconds
    while len(seen) < n and time.monotonic() < deadline:
        r = h.get(path, headers=CLOSE)
        seen[r.headers["x-aisle-worker"]] = r
    assert len(seen) == n, f"saw workers {sorted(seen)} only"
    return seen


class Load:
    """Steady background traffic on recommendations, trending and search; every answer that is not a 200 is kept."""

    def __init__(self, url: str) -> None:
        self.url, self.stop, self.failures, self.count = url, threading.Event(), [], 0
        paths = ["/users/u00001/recommendations?k=10", "/trending?k=10", "/search?q=boots"]
        self.threads = [threading.Thread(target=self._hit, args=(p,), daemon=True) for p in paths]

    def _hit(self, path: str) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as h:
            while not self.stop.is_set():
                try:
                    r = h.get(path, headers=CLOSE)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                self.count += 1
                if r.status_code != 200:
                    self.failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                time.sleep(0.05)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def test_a_new_item_bought_now_trends_on_every_worker_within_the_refresh_interval(shop: dict[str, Path]) -> None:  # noqa: F811
    reg = Registry(shop["registry"])
    tmp = shop["tmp"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker_env = _settings_env(shop["pipeline"])
    with redis_server(tmp / "redis") as redis_url, \
            aisle_process(["serve", "--bundle", str(reg.root), "--port", str(port), "--workers", "2", "--state",
                           redis_url, "--store", str(shop["store"]), "--api-key", "k", "--follow", "60"],
                          tmp / "serve.log") as srv, \
            httpx.Client(base_url=url, timeout=30) as h:
        wait_ready(url, srv, output=lambda: (tmp / "serve.log").read_text(errors="replace"))
        first = reg.current()
        with aisle_process(["worker", "--bundle", str(reg.root), "--store", str(shop["store"]), "--state", redis_url,
                            "--refresh-seconds", str(REFRESH_S)], tmp / "worker.log", **worker_env), \
                Load(url) as load:
            _until(lambda: "holding the training lease" in (tmp / "worker.log").read_text(), 120, "the worker started",
                   tmp / "worker.log")
            r = h.put("/items", headers=KEY, json={"items": [{"item_id": "new-lantern", "title": "Aurora trail lantern",
                                                              "brand": "Lumen", "categories": ["Outdoors", "Lights"],
                                                              "price": 39}]})
            assert r.status_code == 200, r.text
            for w in _per_worker(h, "/trending?k=5").values():
                assert "new-lantern" not in [c["item_id"] for c in w.json()["items"]]
            events = [{"event_id": f"buy-{k}", "user_id": f"shopper-{k}", "item_id": "new-lantern",
                       "event_type": "purchase"} for k in range(40)]
            r = h.post("/events", headers=KEY, json={"events": events})
            assert r.status_code == 200, r.text
            posted = time.monotonic()

            def everywhere() -> bool:
                return all(w.json()["items"][0]["item_id"] == "new-lantern"
                           for w in _per_worker(h, "/trending?k=5").values())

            took = _until(everywhere, REFRESH_S + MARGIN_S, "every worker's /trending showed the new item",
                          tmp / "worker.log")
            print(f"the new item trended on both workers {took:.1f} s after the purchases were posted")
            refreshed = reg.current()
            assert refreshed != first and reg.decision(refreshed).kind == "refresh"  # type: ignore[union-attr]
            versions = {r.headers["x-aisle-version"] for r in _per_worker(h, "/health").values()}
            assert len(versions) == 1
            assert time.monotonic() - posted <= REFRESH_S + MARGIN_S
        # rollback: every worker is back on the version before the refresh within seconds
        with Load(url) as load2:
            cli = subprocess.run([sys.executable, "-m", "aisle", "bundles", "rollback", "--registry", str(reg.root),
                                  "--state", redis_url], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                                 capture_output=True, text=True, timeout=120)
            assert cli.returncode == 0, cli.stdout + cli.stderr
            back = reg.current()
            _until(lambda: all(w.json()["registry_version"] == back for w in _per_worker(h, "/health").values()), 15,
                   "every worker served the rolled-back version")
        assert not load.failures and not load2.failures, (load.failures + load2.failures)[:5]
        assert load.count > 50
