"""An A/B experiment in chromium: a real `aisle serve` with two workers, Redis state, a store and two arms (the
bundle as built, and the same model loaded again beside it under a one-item-per-brand rule). Each shopper keeps
their arm on reload and on whichever worker answers; a click on a card and the add to cart after it are posted with
the request id of the list the card came from; the dashboard's experiment panel shows both arms' numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aisle.config import load_settings
from aisle.experiments.arms import assign
from tests.e2e.conftest import Site, shot
from tests.e2e.helpers import ready
from tests.redisserver import free_port, redis_server
from tests.serving import clients_per_worker, wait_ready


@pytest.fixture(scope="module")
def experiment_site(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    work = tmp_path_factory.mktemp("experiment")
    config = work / "serve.toml"
    config.write_text(
        'impressions_flush_s = 0.2\n[experiment]\nname = "brand-rule"\nsalt = "e2e"\ncontrol = "control"\n'
        '[[experiment.arms]]\nname = "control"\n'
        f'[[experiment.arms]]\nname = "treatment"\nbundle = "{site.workdir / "bundle"}"\n'
        "rules = {max_per_brand = 1}\n")
    env = {**os.environ, "AISLE_CACHE": str(site.workdir / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with redis_server(work / "redis", aof=False) as redis_url:
        port = free_port()
        log = (work / "serve.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(site.workdir / "bundle"),
                                 "--store", str(work / "live.duckdb"), "--state", redis_url, "--workers", "2",
                                 "--config", str(config), "--port", str(port)], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc, seconds=240, output=lambda: (work / "serve.log").read_text())
            yield url, config
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _as(page: Any, url: str, user: str) -> None:
    """Shop as `user` through the storefront's switcher (a new visit: a new session)."""
    page.goto(f"{url}/")
    ready(page, "home")
    page.select_option("#user", f"u:{user}")
    page.wait_for_function("id => JSON.parse(localStorage.getItem('aisle.shopper')).id === id", arg=user)
    ready(page, "home")


def _arm_on_home(page: Any) -> str:
    page.wait_for_selector("#recommended[data-arm]")
    return str(page.get_attribute("#recommended", "data-arm"))


def test_two_arms_sticky_attributed_and_on_the_dashboard(page: Any, experiment_site: tuple[str, Path]) -> None:
    url, config = experiment_site
    exp = load_settings(config, env={}).experiment
    assert exp is not None
    shoppers: dict[str, str] = {}  # one known shopper of the switcher per arm
    for u in httpx.get(f"{url}/api/web/users", params={"k": 12}).json()["users"]:
        shoppers.setdefault(assign(u["user_id"], exp).name, u["user_id"])
    assert set(shoppers) == {"control", "treatment"}, shoppers
    # both workers answer, and each gives a shopper the same arm
    workers = clients_per_worker(url, 2, timeout=30)
    try:
        for arm, user in shoppers.items():
            for client in workers.values():
                arms = {client.get(f"/users/{user}/recommendations").json()["arm"] for _ in range(10)}
                assert arms == {arm}
    finally:
        for client in workers.values():
            client.close()
    for arm, user in shoppers.items():
        _as(page, url, user)
        assert _arm_on_home(page) == arm
        page.reload()
        ready(page, "home")
        assert _arm_on_home(page) == arm  # sticky across reloads
        listed = str(page.get_attribute("#recommended", "data-request-id"))
        first = page.locator("#recommended li.card").first
        assert first.get_attribute("data-request-id") == listed
        with page.expect_request(lambda r: r.url.endswith("/events") and r.method == "POST") as click:
            first.locator("a.card-link").click()
        posted = json.loads(click.value.post_data or "{}")["events"][0]
        assert posted["event_type"] == "click" and posted["request_id"] == listed
        ready(page, "product")
        if page.locator("#add-to-cart").is_enabled():
            with page.expect_request(lambda r: r.url.endswith("/events") and r.method == "POST") as cart:
                page.click("#add-to-cart")
            added = json.loads(cart.value.post_data or "{}")["events"][0]
            assert added["event_type"] == "add_to_cart" and added["request_id"] == listed  # from the same list
        shot(page, f"experiment-{arm}-product")
    page.goto(f"{url}/dashboard")
    page.wait_for_selector("#experiment-body[data-ready] #experiment-table")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # impressions and events reach the store through their Redis streams
        body = httpx.get(f"{url}/api/experiments").json()
        arms = {a["arm"]: a for a in body["report"]["arms"]}
        if set(arms) == {"control", "treatment"} and all(a["metrics"]["click_rate"]["value"] > 0
                                                         for a in arms.values()):
            break
        time.sleep(1)
    else:
        pytest.fail(f"the report did not count both arms' clicks: {body}")
    for arm in ("control", "treatment"):
        page.wait_for_function(
            "arm => { const r = document.querySelector(`#experiment-arm-${arm} td`);"
            " return r && Number(r.textContent) > 0; }", arg=arm, timeout=20_000)
        row = page.inner_text(f"#experiment-arm-{arm}")
        assert "%" in row and "$" in row, row
    assert "p =" in page.inner_text("#experiment-arm-treatment")
    assert "max_per_brand" in page.inner_text("#experiment-arms")
    assert page.locator("#chart-experiment-click_rate rect.bar").count() == 2
    shot(page, "dashboard-experiment")
