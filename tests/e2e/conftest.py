"""Browser tests: a real `aisle serve` (uvicorn) over a bundle that `aisle demo --fast` builds from a tiny synthetic
store, driven by Playwright through Debian's chromium. One server per session; every test gets a fresh browser
context (its own localStorage, so its own anonymous shopper). Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redisserver import free_port
from tests.serving import wait_ready

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
STORE = ("--items", "400", "--users", "200", "--events", "12000", "--seed", "3")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test runs in one xdist worker (one server, one bundle), and is marked `e2e`."""
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.xdist_group("e2e"))


@dataclass(frozen=True)
class Site:
    url: str
    workdir: Path



def _need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (install Debian's chromium: apt-get install -y chromium; CI does)")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`aisle demo --fast --no-serve` on a tiny store, then `aisle serve` on a free port until the session ends."""
    _need_chromium()
    work = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, "AISLE_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    demo = subprocess.run([sys.executable, "-m", "aisle", "demo", "--fast", "--no-serve", "--workdir", str(work),
                           *STORE], env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    port = free_port()
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(work / "bundle"), "--store",
                             str(work / "demo.duckdb"), "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, seconds=180, output=lambda: (work / "serve.log").read_text())
        yield Site(url, work)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium for one module. Not for the session: Playwright's sync API leaves its asyncio loop marked running
    in this thread while it is open, so a later test in the same worker could not call asyncio.run()."""
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: object, site: Site, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh context per test (wide desktop viewport); page errors fail the test; a screenshot is always kept."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.url)  # type: ignore[attr-defined]
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(20_000)
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-end.png"), full_page=True)
    finally:
        ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(pg: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
