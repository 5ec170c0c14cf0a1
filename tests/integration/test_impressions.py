"""Request ids, the impression log, attribution and A/B experiments through the real API (TestClient) on a tiny
synthetic store: every list surface answers with a request id and logs what it showed; events posted with that id
reach the store with it; experiment arms are sticky and served by their own runtime; /api/experiments reports
both arms. Memory state writes impressions to the store directly; Redis state through the `aisle:impressions`
stream and its consumer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from aisle.config import ArmConfig, ConfigError, ExperimentConfig, Settings, load_settings
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig
from aisle.experiments.arms import assign
from aisle.pipeline import SourceSpec
from aisle.serve import create_app
from aisle.store import Store
from aisle.types import IMPRESSION_SCHEMA
from tests.bundles import save_bundle, synthetic_shop
from tests.redisserver import free_port, redis_server

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("fbt", "fbt", "bought_together"),
           SourceSpec("trending", "trending", "trending"))
EXPERIMENT = ExperimentConfig(name="brands", salt="s1", arms=(
    ArmConfig(name="control"), ArmConfig(name="one_per_brand", rules={"max_per_brand": 1})))


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return synthetic_shop(SyntheticConfig(n_items=300, n_users=120, n_events=6_000, seed=5))


@pytest.fixture(scope="module")
def bundle_dir(shop: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    save_bundle(shop, SOURCES, out, rounds=20)
    return out


def _settings(bundle_dir: Path, store: Path, **kw: object) -> Settings:
    return Settings(bundle=bundle_dir, store=store, impressions_flush_s=0.1, **kw)  # type: ignore[arg-type]


def _stored(store: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    with Store(store, read_only=True) as s:
        return s.impressions(), s.events()


def _users_in(arm: str, n: int) -> list[str]:
    return [u for u in (f"u{k:05d}" for k in range(2_000)) if assign(u, EXPERIMENT).name == arm][:n]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "live.duckdb"


def test_every_list_surface_answers_with_a_request_id_and_logs_what_it_showed(bundle_dir: Path, shop: Dataset,
                                                                           store: Path) -> None:
    item = shop.items["item_id"][0]
    viewer, now = "anon-imp-1", datetime.now(UTC)
    with TestClient(create_app(_settings(bundle_dir, store))) as c:
        viewed = [{"user_id": viewer, "item_id": i, "event_type": "view",
                   "timestamp": (now - timedelta(minutes=m)).isoformat()}
                  for m, i in enumerate(shop.items.filter(pl.col("available"))["item_id"][:3])]
        assert c.post("/events", json={"events": viewed}).json()["accepted"] == 3
        calls = {"recommendations": ("/users/u00001/recommendations", {"k": 5, "session_id": "s1"}),
                 "recently_viewed": (f"/users/{viewer}/recently-viewed", {"k": 5, "session_id": "s3"}),
                 "similar": (f"/items/{item}/similar", {"k": 4, "user": "u00001", "session_id": "s1"}),
                 "bought_together": (f"/items/{item}/bought-together", {"k": 3}),
                 "trending": ("/trending", {"k": 6, "session_id": "s2"}),
                 "search": ("/search", {"q": "shoes", "page": 2, "page_size": 3, "session_id": "s2"})}
        answers = {}
        for surface, (path, params) in calls.items():
            r = c.get(path, params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            assert UUID.match(body["request_id"]) and r.headers["x-request-id"] == body["request_id"]
            assert body["arm"] is None  # no experiment
            answers[surface] = body
        again = c.get("/trending", params={"k": 6}).json()
        assert again["request_id"] != answers["trending"]["request_id"]  # every answer is a new list
    imp, _ = _stored(store)  # the server's stop flushed what it buffered
    assert imp.schema == pl.Schema(IMPRESSION_SCHEMA)
    for surface, body in answers.items():
        rows = imp.filter(pl.col("request_id") == body["request_id"]).sort("position")
        shown = [h["item_id"] for h in body.get("hits", body.get("items", []))]
        assert rows["item_id"].to_list() == shown and rows.height > 0, surface
        assert set(rows["surface"]) == {surface} and set(rows["propensity"]) == {1.0}
        assert set(rows["model_version"]) == {body["model_version"]}
        first = 4 if surface == "search" else 1  # page 2 of 3-item pages starts at position 4
        assert rows["position"].to_list() == list(range(first, first + len(shown)))
    rec = imp.filter(pl.col("request_id") == answers["recommendations"]["request_id"])
    assert set(rec["user_id"]) == {"u00001"} and set(rec["session_id"]) == {"s1"}
    assert rec["score"].to_list() == [i["score"] for i in answers["recommendations"]["items"]]
    found = imp.filter(pl.col("request_id") == answers["search"]["request_id"])
    assert set(found["query"]) == {"shoes"} and set(found["user_id"].to_list()) == {None}


def test_events_carry_the_request_id_to_the_store_and_a_bad_one_is_a_422(bundle_dir: Path, store: Path) -> None:
    with TestClient(create_app(_settings(bundle_dir, store))) as c:
        listed = c.get("/users/u00002/recommendations", params={"k": 3}).json()
        item = listed["items"][0]["item_id"]
        ok = c.post("/events", json={"events": [
            {"user_id": "u00002", "item_id": item, "event_type": "click", "request_id": listed["request_id"]},
            {"user_id": "u00002", "item_id": item, "event_type": "view"}]})
        assert ok.json() == {"accepted": 2, "duplicates": 0}
        bad = c.post("/events", json={"events": [{"user_id": "u00002", "item_id": item, "event_type": "click",
                                                  "request_id": "r\n1"}]})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"][-1] == "request_id"
        assert "control character" in bad.json()["detail"][0]["msg"]
    _, events = _stored(store)
    clicked = events.filter(pl.col("event_type") == "click")["request_id"].to_list()
    viewed = events.filter(pl.col("event_type") == "view")["request_id"].to_list()
    assert (clicked, viewed) == ([listed["request_id"]], [None])


def test_experiment_arms_are_sticky_and_served_by_their_own_rules(bundle_dir: Path, shop: Dataset,
                                                                  store: Path) -> None:
    settings = _settings(bundle_dir, store, experiment=EXPERIMENT)
    treated, control = _users_in("one_per_brand", 6), _users_in("control", 6)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        brands = dict(zip(shop.items["item_id"].to_list(), shop.items["brand"].to_list(), strict=True))
        for user in treated + control:
            first = a.get(f"/users/{user}/recommendations", params={"k": 10}).json()
            # the same arm on every request and in another worker (no shared state: the hash decides)
            assert {first["arm"], b.get(f"/users/{user}/recommendations").json()["arm"],
                    a.get("/trending", params={"user": user}).json()["arm"]} == {assign(user, EXPERIMENT).name}
            shown = [brands[i["item_id"]] for i in first["items"] if brands.get(i["item_id"])]
            if first["arm"] == "one_per_brand":
                assert len(shown) == len(set(shown)), shown  # the arm's own rules serve it
        # anonymous shoppers are assigned by their session
        arms = {a.get("/trending", params={"session_id": f"anon-{k}"}).json()["arm"] for k in range(40)}
        assert arms == {"control", "one_per_brand"}
        assert a.get("/trending").json()["arm"] is None  # neither user nor session: outside the experiment
        # a click and a purchase attributed to a treated shopper's list
        listed = a.get(f"/users/{treated[0]}/recommendations", params={"k": 5, "session_id": "t0"}).json()
        item = listed["items"][0]["item_id"]
        a.post("/events", json={"events": [
            {"user_id": treated[0], "item_id": item, "event_type": t, "session_id": "t0",
             "request_id": listed["request_id"], **({"value": 1} if t == "purchase" else {})}
            for t in ("click", "add_to_cart", "purchase")]})
        deadline = time.monotonic() + 10
        while True:  # the flush thread writes within impressions_flush_s; the route flushes its own worker
            rep = a.get("/api/experiments").json()
            if {x["arm"] for x in rep["report"]["arms"]} == {"control", "one_per_brand"} or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert rep["experiment"]["name"] == "brands" and rep["experiment"]["control"] == "control"
    assert [x["name"] for x in rep["experiment"]["arms"]] == ["control", "one_per_brand"]
    arms = {x["arm"]: x for x in rep["report"]["arms"]}
    assert set(arms) == {"control", "one_per_brand"} and arms["control"]["vs_control"] is None
    treated_arm = arms["one_per_brand"]
    assert treated_arm["metrics"]["click_rate"]["value"] > 0 and treated_arm["metrics"]["conversion"]["value"] > 0
    assert treated_arm["vs_control"]["conversion"]["p_value"] <= 1.0 and "conversion" in rep["table"]
    imp, _ = _stored(store)
    per_user = imp.drop_nulls("user_id").group_by("user_id").agg(pl.col("arm").n_unique())
    assert per_user.height >= 12 and per_user["arm"].max() == 1  # one arm per shopper


def test_without_an_experiment_or_a_store_the_report_says_why(bundle_dir: Path, store: Path) -> None:
    with TestClient(create_app(_settings(bundle_dir, store))) as c:
        assert c.get("/api/experiments").json()["experiment"] is None
        bad = c.get("/api/experiments", params={"since": "2026-01-01T00:00:00"})
        assert bad.status_code == 422 and "time zone" in bad.json()["detail"][0]["msg"]
        number = c.get("/api/experiments", params={"since": "0.5"})  # not read as seconds since the epoch
        assert number.status_code == 422 and "ISO 8601" in number.json()["detail"][0]["msg"]
        assert c.get("/api/experiments", params={"since": "2026-01-01T00:00:00Z"}).status_code == 200
    with TestClient(create_app(Settings(bundle=bundle_dir, experiment=EXPERIMENT))) as c:
        r = c.get("/api/experiments")
        assert r.status_code == 503 and "--store" in r.json()["detail"]
        assert c.get("/users/u1/recommendations").json()["arm"] == assign("u1", EXPERIMENT).name


def test_experiment_settings_are_checked_at_start(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text('[experiment]\nname = "x"\n[[experiment.arms]]\nname = "a"\n[[experiment.arms]]\nname = "b"\n'
                    'rules = {max_per_brnad = 1}\n')
    with pytest.raises(ConfigError, match="arm 'b' rules: max_per_brnad"):
        load_settings(path, env={})
    path.write_text('[experiment]\nname = "x"\ncontrol = "c"\n[[experiment.arms]]\nname = "a"\n'
                    '[[experiment.arms]]\nname = "b"\nweight = 3\n')
    with pytest.raises(ConfigError, match="control arm 'c' is not one of the arms"):
        load_settings(path, env={})
    path.write_text(path.read_text().replace('control = "c"\n', ""))
    exp = load_settings(path, env={}).experiment
    assert exp is not None and exp.control_arm == "a"
    share = sum(assign(f"user-{k}", exp).name == "b" for k in range(4_000)) / 4_000
    assert 0.72 < share < 0.78  # weight 3 against 1


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis"), aof=False) as url:
        yield url


def test_with_redis_impressions_go_through_their_stream_into_the_store(bundle_dir: Path, store: Path,
                                                                         redis_url: str) -> None:
    import redis

    settings = _settings(bundle_dir, store, state=redis_url, experiment=EXPERIMENT)
    with TestClient(create_app(settings)) as c:
        ids = [c.get(f"/users/u{k:05d}/recommendations", params={"k": 4}).json()["request_id"] for k in range(20)]
        r = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and int(r.get("aisle:impressions:consumed") or 0) < 80:
            time.sleep(0.2)
        assert int(r.get("aisle:impressions:consumed") or 0) == 80 and r.xlen("aisle:impressions") == 0
    imp, _ = _stored(store)
    assert set(imp["request_id"]) == set(ids) and imp.height == 80
    assert imp.filter(pl.col("arm").is_null()).is_empty()


def test_lists_served_before_an_erasure_but_flushed_after_it_never_reach_the_store(bundle_dir: Path, tmp_path: Path,
                                                                                    redis_url: str) -> None:
    """A worker flushes its buffered impressions up to a flush interval later: a shopper erased meanwhile must not
    come back through them. The consumer places an impression at the time it was served, before the erasure."""
    import redis

    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    store = tmp_path / "late.duckdb"
    settings = _settings(bundle_dir, store, state=redis_url).model_copy(update={"impressions_flush_s": 2.0})
    with TestClient(create_app(settings)) as c:
        for k in range(3):
            assert c.get(f"/users/u{k:05d}/recommendations", params={"k": 4}).status_code == 200
        assert c.get("/trending", params={"k": 4}).status_code == 200  # a list shown to nobody in particular
        assert c.delete("/users/u00001").status_code == 200  # before the buffer was flushed
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (int(r.get("aisle:impressions:consumed") or 0) >= 12
                                                   and r.xlen("aisle:impressions") == 0):
            time.sleep(0.2)
    imp, _ = _stored(store)
    assert set(imp["user_id"]) == {"u00000", "u00002", None} and imp.height == 12
    assert r.xlen("aisle:impressions") == 0
    r.close()


def test_serve_refuses_an_arm_whose_bundle_is_missing(bundle_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aisle.cli import app

    config = tmp_path / "serve.toml"
    config.write_text(f'[experiment]\nname = "x"\n[[experiment.arms]]\nname = "a"\n[[experiment.arms]]\nname = "b"\n'
                      f'bundle = "{tmp_path / "nothing"}"\n')
    res = CliRunner().invoke(app, ["serve", "--bundle", str(bundle_dir), "--config", str(config)])
    assert res.exit_code == 2 and "experiment arm 'b'" in res.output and "no bundle here" in res.output


def test_kill_9_loses_at_most_the_last_flush_of_impressions(bundle_dir: Path, tmp_path: Path) -> None:
    """What the README promises: a worker killed with SIGKILL loses only what it buffered since its last flush
    (`impressions_flush_s`); every list answered longer ago than that is in the store."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from tests.serving import wait_ready

    port = free_port()
    db = tmp_path / "live.duckdb"
    env = {**os.environ, "AISLE_IMPRESSIONS_FLUSH_S": "1.0", "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(bundle_dir), "--store", str(db),
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    answered: list[tuple[float, str]] = []
    try:
        wait_ready(url, proc, seconds=180, output=lambda: (tmp_path / "serve.log").read_text())
        with httpx.Client(base_url=url) as c:
            t_end = time.monotonic() + 4.0
            while time.monotonic() < t_end:
                rid = c.get("/trending", params={"k": 5, "session_id": "s"}).json()["request_id"]
                answered.append((time.monotonic(), rid))
                time.sleep(0.01)
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    stored = set(_stored(db)[0]["request_id"])
    lost = [t for t, rid in answered if rid not in stored]
    assert len(answered) > 50 and len(stored) > 0
    # everything answered more than one flush interval (plus the store write's own time) before the kill is stored
    assert all(killed_at - t < 1.0 + 1.5 for t in lost), [round(killed_at - t, 2) for t in lost]
    print(f"kill -9 after {len(answered)} lists: {len(lost)} lost, answered in the last "
          f"{max((killed_at - t for t in lost), default=0):.2f} s before the kill")
