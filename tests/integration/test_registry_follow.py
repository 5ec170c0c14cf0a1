"""Every serving worker follows the bundle registry: Redis notices (and polling without Redis), a background load
and one reference swap, a broken version refused while the old one keeps serving, `POST /admin/reload` on every
worker. In-process where one worker shows it; real `aisle serve --workers 2` processes where workers must agree."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aisle.config import Settings
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from aisle.registry import Decision, Registry, notify
from aisle.serve import create_app
from tests.bundles import save_bundle, synthetic_shop
from tests.redisserver import free_port, redis_server, start_redis
from tests.serving import aisle_process, wait_ready

CLOSE = {"Connection": "close"}  # each request on a new connection, so both workers answer some
SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))


def _bundle(out: Path, seed: int) -> Path:
    """A small serving bundle (search included, BM25 only) of its own synthetic store: seeds differ -> versions
    differ (the version is creation time + data fingerprint)."""
    shop = synthetic_shop(SyntheticConfig(n_items=200, n_users=100, n_events=4_000, seed=seed))
    save_bundle(shop, SOURCES, out, rounds=10)
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return _bundle(root / "a", seed=11), _bundle(root / "b", seed=12)


@pytest.fixture
def registry(bundles: tuple[Path, Path], tmp_path: Path) -> tuple[Registry, str, str]:
    """A registry whose chain is v1 then v2 (current): a rollback returns to v1."""
    reg = Registry(tmp_path / "registry")
    v1 = reg.publish(bundles[0], Decision("manual", True, "first"))
    v2 = reg.publish(bundles[1], Decision("manual", True, "second"))
    return reg, v1, v2


def _broken(reg: Registry, good: Path, tmp_path: Path) -> str:
    """A version whose manifest is whole but one part is not (the histories file is garbage): published, not
    promoted."""
    bad = tmp_path / "broken"
    shutil.copytree(good, bad)
    (bad / "histories.npz").write_bytes(b"not a numpy archive")
    return reg.publish(bad, Decision("manual", False, "broken on purpose"))


def _until(check: Callable[[], bool], seconds: float, what: str) -> float:
    """Seconds until `check()` holds; fails after `seconds` saying `what` did not happen."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if check():
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s")


def _served(metrics_text: str) -> list[dict[str, str]]:
    """The `aisle_model_info` series as label dicts, each with its value under "value"."""
    out = []
    for labels, value in re.findall(r'^aisle_model_info\{(.*)\} (\S+)$', metrics_text, re.M):
        out.append({**dict(re.findall(r'(\w+)="([^"]*)"', labels)), "value": value})
    return out


def _failed_loads(metrics_text: str) -> float:
    found = re.search(r'^aisle_reloads_total\{outcome="failed"\} (\S+)$', metrics_text, re.M)
    return float(found.group(1)) if found else 0.0


# ---- one worker, in process ------------------------------------------------------------------------------------


def test_a_worker_polls_the_registry_and_swaps_to_the_new_current_version(registry: tuple[Registry, str, str],
                                                                         tmp_path: Path) -> None:
    reg, v1, v2 = registry
    with TestClient(create_app(Settings(bundle=reg.root, follow_seconds=0.2))) as client:
        h = client.get("/health")
        assert h.json()["registry_version"] == v2 and h.json()["pid"] == os.getpid()
        assert h.headers["x-aisle-worker"] == str(os.getpid())
        assert h.headers["x-aisle-version"] == h.json()["version"] == client.get("/trending").json()["model_version"]
        first_version = h.json()["version"]
        # a catalog upsert made through the API survives the swap: the new version is served with it
        item = {"item_id": "new-boot-1", "title": "Glacier summit boot", "brand": "Trailhound",
                "categories": ["Outdoors", "Footwear"], "price": 189}
        assert client.put("/items", json={"items": [item]}).status_code == 200
        reg.rollback()  # no Redis here: only polling can tell the worker
        _until(lambda: client.get("/health").json()["registry_version"] == v1, 10, "the worker followed the rollback")
        h = client.get("/health").json()
        assert h["version"] != first_version and client.get("/trending").headers["x-aisle-version"] == h["version"]
        found = client.get("/search", params={"q": "glacier summit boot"}).json()
        assert found["model_version"] == h["version"] and found["hits"][0]["item_id"] == "new-boot-1", found
        served = _served(client.get("/metrics").text)  # one process: the version served before is gone
        assert served == [{"version": h["version"], "registry_version": v1, "pid": str(os.getpid()),
                           "value": served[0]["value"]}] and float(served[0]["value"]) == pytest.approx(h["loaded_at"])


def test_a_server_started_on_an_empty_registry_becomes_ready_with_the_first_promotion(bundles: tuple[Path, Path],
                                                                                       tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry")
    reg.versions_dir.mkdir(parents=True)  # servers may start before the first `aisle worker` publish
    with TestClient(create_app(Settings(bundle=reg.root, follow_seconds=0.1))) as client:
        r = client.get("/ready")
        assert r.status_code == 503 and "no current version yet" in r.json()["error"], r.text
        assert client.get("/health").json()["version"] is None
        v1 = reg.publish(bundles[0], Decision("manual", True, "first"))
        _until(lambda: client.get("/ready").status_code == 200, 10, "the server became ready")
        assert client.get("/health").json()["registry_version"] == v1


def test_a_broken_version_is_refused_once_and_the_old_one_keeps_serving(registry: tuple[Registry, str, str],
                                                                        bundles: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    reg, v1, v2 = registry
    bad = _broken(reg, bundles[0], tmp_path)
    with TestClient(create_app(Settings(bundle=reg.root, follow_seconds=0.1))) as client:
        served = client.get("/health").json()["version"]
        reg.promote(bad, reason="a bad promotion")
        _until(lambda: _failed_loads(client.get("/metrics").text) == 1, 10, "the failed load was counted")
        time.sleep(1.0)  # ten more polls: a version that failed is not tried again in a loop
        assert _failed_loads(client.get("/metrics").text) == 1
        h = client.get("/health").json()
        assert h["version"] == served and h["registry_version"] == v2 and bad in h["load_error"]
        assert client.get("/ready").status_code == 200 and client.get("/trending").status_code == 200
        # an explicit reload tries again (and fails again, saying so), then the next promotion is followed
        r = client.post("/admin/reload")
        assert r.status_code == 500 and "previous bundle keeps serving" in r.json()["detail"], r.text
        assert _failed_loads(client.get("/metrics").text) == 2
        reg.promote(v1)
        _until(lambda: client.get("/health").json()["registry_version"] == v1, 10, "the next change was followed")
        assert "load_error" not in client.get("/health").json()


def test_admin_reload_with_a_version_loads_it_then_promotes_it(registry: tuple[Registry, str, str],
                                                               bundles: tuple[Path, Path], tmp_path: Path) -> None:
    reg, v1, _v2 = registry
    bad = _broken(reg, bundles[0], tmp_path)
    with TestClient(create_app(Settings(bundle=reg.root, follow_seconds=0))) as client:
        r = client.post("/admin/reload", json={"version": v1})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["requested"] == body["registry_version"] == v1 and body["loaded"] is True
        assert body["worker"] == os.getpid() and body["notified"] is None  # memory state: nobody else to tell
        assert reg.current() == v1 and reg.history()[-1]["reason"] == "promoted through POST /admin/reload"
        # a version that does not load is not promoted
        r = client.post("/admin/reload", json={"version": bad})
        assert r.status_code == 500 and bad in r.json()["detail"]
        assert reg.current() == v1 and client.get("/health").json()["registry_version"] == v1
        assert client.post("/admin/reload", json={"version": "nope"}).status_code == 404
        r = client.post("/admin/reload", json={"path": str(bundles[0])})
        assert r.status_code == 409 and "aisle bundles publish" in r.json()["detail"]
        assert client.post("/admin/reload", json={"version": ""}).status_code == 422


def test_a_bundle_folder_rejects_a_version_and_still_reloads_by_path(bundles: tuple[Path, Path]) -> None:
    with TestClient(create_app(Settings(bundle=bundles[0]))) as client:
        assert client.post("/admin/reload", json={"version": "x"}).status_code == 409
        r = client.post("/admin/reload", json={"path": str(bundles[1])})
        assert r.status_code == 200 and r.json()["requested"] == str(bundles[1]), r.text
        assert client.get("/health").json()["registry_version"] is None


def test_the_listener_reconnects_after_a_redis_restart(registry: tuple[Registry, str, str], tmp_path: Path) -> None:
    reg, v1, _v2 = registry
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_proc = start_redis(tmp_path / "redis", port, aof=False)
    try:
        # follow_seconds=0: notices only, so what follows is the subscription's doing, not a poll
        with TestClient(create_app(Settings(bundle=reg.root, state=url, follow_seconds=0))) as client:
            _until(lambda: notify(url, "promote", None) >= 1, 10, "the worker subscribed")
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
            time.sleep(1.0)
            redis_proc = start_redis(tmp_path / "redis", port, aof=False)
            _until(lambda: notify(url, "promote", None) >= 1, 15, "the worker subscribed again after the restart")
            reg.rollback()
            notify(url, "promote", v1)
            _until(lambda: client.get("/health").json()["registry_version"] == v1, 10, "the notice was followed")
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


# ---- real processes: aisle serve --workers 2 ------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def _serving(args: list[str], log: Path) -> Iterator[str]:
    port = free_port()
    with aisle_process(["serve", "--port", str(port), *args], log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, output=lambda: log.read_text(errors="replace"))
        yield url


def _workers(h: httpx.Client, n: int = 2, seconds: float = 30) -> dict[int, dict[str, Any]]:
    """/health of each of `n` worker processes (hit until each answered at least once since this call)."""
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + seconds
    while len(seen) < n and time.monotonic() < deadline:
        body = h.get("/health", headers=CLOSE).json()  # a new connection each time: the kernel picks the worker
        seen[body["pid"]] = body
    assert len(seen) == n, f"saw workers {sorted(seen)} only"
    return seen


def _all_serve(h: httpx.Client, registry_version: str) -> bool:
    return all(w["registry_version"] == registry_version for w in _workers(h).values())


class Load:
    """Steady background traffic (threads on recommendations and search); every answer that is not a 200 is kept."""

    def __init__(self, url: str) -> None:
        self.url, self.stop = url, threading.Event()
        self.failures: list[str] = []
        self.answers: list[tuple[str, str]] = []  # (worker pid, bundle version), from the headers
        paths = ["/users/u00001/recommendations?k=10", "/users/u00042/recommendations?k=5", "/search?q=boots",
                 "/search?q=red+shirt&page=2", "/ready"]  # /ready too: a worker that is loading stays ready
        self.threads = [threading.Thread(target=self._hit, args=(p,), daemon=True) for p in paths]

    def _hit(self, path: str) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as h:
            while not self.stop.is_set():
                try:
                    r = h.get(path, headers=CLOSE)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                else:
                    self.answers.append((r.headers["x-aisle-worker"], r.headers["x-aisle-version"]))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def test_two_workers_follow_rollback_promotion_and_reload_with_no_failed_request(
        registry: tuple[Registry, str, str], bundles: tuple[Path, Path], tmp_path: Path) -> None:
    reg, v1, v2 = registry
    log = tmp_path / "serve.log"
    with redis_server(tmp_path / "redis", aof=False) as redis_url, \
            _serving(["--bundle", str(reg.root), "--workers", "2", "--state", redis_url, "--follow", "60",
                      "--api-key", "k"], log) as url, httpx.Client(base_url=url, timeout=30) as h:
        # --follow 60: the next poll is a minute away, so what follows within seconds is the Redis notice
        before = _workers(h)
        assert {w["registry_version"] for w in before.values()} == {v2}
        _until(lambda: notify(redis_url, "promote", None) >= 2, 20, "both workers subscribed")
        with Load(url) as load:
            time.sleep(1.0)
            # (1) rollback through the CLI: every worker serves v1 within seconds
            cli = subprocess.run([sys.executable, "-m", "aisle", "bundles", "rollback", "--registry", str(reg.root),
                                  "--state", redis_url], env=_env(), capture_output=True, text=True, timeout=120)
            assert cli.returncode == 0 and "told 2" in cli.stdout, cli.stdout + cli.stderr
            took = _until(lambda: _all_serve(h, v1), 15, "every worker served the rolled-back version")
            print(f"rollback followed by both workers in {took:.2f} s")
            rolled_back = _workers(h)
            # (3) POST /admin/reload reaches both workers: each loads again (a new loaded_at), same version
            loaded = {pid: w["loaded_at"] for pid, w in _workers(h).items()}
            r = h.post("/admin/reload", headers={"X-API-Key": "k"})
            assert r.status_code == 200, r.text
            assert r.json()["loaded"] is True and r.json()["requested"] == v1 and r.json()["notified"] >= 2
            _until(lambda: all(w["loaded_at"] > loaded[pid] for pid, w in _workers(h).items()), 15,
                   "both workers reloaded")
            # ... and with a version it promotes it for every worker
            r = h.post("/admin/reload", json={"version": v2}, headers={"X-API-Key": "k"})
            assert r.status_code == 200 and r.json()["registry_version"] == v2, r.text
            _until(lambda: _all_serve(h, v2), 15, "every worker served the promoted version")
            # (5) a broken version: each worker refuses it, keeps v2, and counts the failure
            bad = _broken(reg, bundles[0], tmp_path)
            promote = subprocess.run([sys.executable, "-m", "aisle", "bundles", "promote", bad, "--registry",
                                      str(reg.root), "--state", redis_url], env=_env(), capture_output=True,
                                     text=True, timeout=120)
            assert promote.returncode == 0, promote.stdout + promote.stderr
            _until(lambda: _failed_loads(h.get("/metrics").text) >= 2, 15, "both workers counted the failed load")
            time.sleep(1.0)
        assert all(w["registry_version"] == v2 and bad in w["load_error"] for w in _workers(h).values())
        assert h.get("/ready").status_code == 200
        after = _workers(h)
        served = _served(h.get("/metrics").text)
        for pid, w in after.items():  # per worker: the version served now (> 0) and those served before (0)
            mine = {(s["registry_version"], s["version"]): float(s["value"]) for s in served if s["pid"] == str(pid)}
            now = [k for k, value in mine.items() if value > 0]
            assert now == [(v2, w["version"])], mine
        # (2) the steady load saw no failure through every swap, and was answered by both workers and both versions
        assert not load.failures, load.failures[:5]
        assert len(load.answers) > 100 and {pid for pid, _ in load.answers} == {str(p) for p in after}
        assert {v for _, v in load.answers} == {w["version"] for w in [*before.values(), *rolled_back.values()]}


def test_without_redis_a_worker_follows_by_polling(registry: tuple[Registry, str, str], tmp_path: Path) -> None:
    reg, v1, v2 = registry
    with _serving(["--bundle", str(reg.root), "--follow", "1"], tmp_path / "serve.log") as url, \
            httpx.Client(base_url=url, timeout=30) as h:
        assert h.get("/health").json()["registry_version"] == v2
        reg.rollback()
        took = _until(lambda: h.get("/health").json()["registry_version"] == v1, 1 + 10,
                      "the worker followed the rollback by polling")
        print(f"polling worker followed in {took:.2f} s (poll interval 1 s)")
