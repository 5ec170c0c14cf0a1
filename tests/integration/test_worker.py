"""`aisle worker` as real processes: one trains at a time (a second waits and takes over within the lease's ttl
after a kill -9 of the first), a kill -9 in the middle of a refit or refresh never leaves `current` on a partial
bundle and the next run goes on from the last watermark (every event folded exactly once), and a regressing
candidate is refused with both scores in `aisle bundles list` and the log."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest

from aisle.config import load_settings
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.registry import Registry
from aisle.serve.sink import StoreSink
from aisle.store import open_store
from aisle.types import Event, EventType, events_frame
from aisle.worker import Worker
from tests.redisserver import free_port, redis_server
from tests.serving import aisle_process, wait_ready
from tests.workers import run_job

PIPELINE = """[pipeline]
rounds = 10
sources = [
  {key = "itemknn", model = "itemknn", kind = "i2i", decay = 0.7},
  {key = "markov", model = "markov", kind = "i2i", window = 5},
  {key = "fbt", model = "fbt", kind = "bought_together"},
  {key = "trending", model = "trending", kind = "trending"},
]
"""
WEAK = """[pipeline]
rounds = 10
sources = [{key = "trending", model = "trending", kind = "trending"}]
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store with the older 80% of a synthetic shop's events, a registry whose current version a worker fitted on
    it, and the newer 20% to post later."""
    root = tmp_path_factory.mktemp("worker-base")
    s = generate(SyntheticConfig(n_items=300, n_users=200, n_events=12_000, seed=3))
    events = s.events.sort("timestamp")
    cut = int(events.height * 0.8)
    events.slice(cut).write_parquet(root / "later.parquet")
    (root / "pipeline.toml").write_text(PIPELINE)
    (root / "weak.toml").write_text(WEAK)
    with open_store(root / "shop.duckdb") as store:
        store.upsert_items(s.items)
        store.upsert_users(s.users)
        store.append_events(events.slice(0, cut))
    settings = load_settings(None, env=_settings_env(root / "pipeline.toml"), bundle=root / "registry",
                             store=str(root / "shop.duckdb"))
    from aisle.cli.train import load_config
    from aisle.pipeline import PipelineConfig

    pipeline = PipelineConfig().updated(load_config(root / "pipeline.toml")["pipeline"])
    assert run_job(settings, pipeline=pipeline).decision.promoted  # type: ignore[union-attr]
    return {"root": root}


def _settings_env(pipeline: Path, **extra: str) -> dict[str, str]:
    return {"AISLE_WORKER__PIPELINE": str(pipeline), "AISLE_WORKER__DENSE": "false",
            "AISLE_WORKER__HOLDOUT_EVENTS": "1500",
            "AISLE_WORKER__LATENCY_BUDGET_MS": "2000",  # a shared 2-core machine; the budget is not under test here
            **extra}


@pytest.fixture
def shop(base: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A private copy of the base store and registry for one test."""
    root = base["root"]
    shutil.copytree(root / "registry", tmp_path / "registry")
    shutil.copy(root / "shop.duckdb", tmp_path / "shop.duckdb")
    return {"registry": tmp_path / "registry", "store": tmp_path / "shop.duckdb", "later": root / "later.parquet",
            "pipeline": root / "pipeline.toml", "weak": root / "weak.toml", "tmp": tmp_path}


def _append(store: Path, events: pl.DataFrame) -> int:
    """Append as the servers do: under the DuckDB file's lock, so a worker reading it meanwhile is not disturbed."""
    sink = StoreSink(store)
    try:
        with sink.locked() as s:
            return s.append_events(events).inserted
    finally:
        sink.close()


# `aisle worker` whose publishing step, once reached, says so in a file and waits to be killed: a kill -9 that
# lands with the candidate written but not yet a version, every time (polling for the half-written folder
# raced the publish on a busy machine)
HELD_AT_PUBLISH = """
import pathlib, runpy, sys, time
from aisle.registry import Registry
reached = pathlib.Path(sys.argv.pop(1))
def held(self, tmp, *args, **kwargs):
    reached.write_text(str(tmp))
    time.sleep(3600)
Registry.publish = held
sys.argv[0] = "aisle"
runpy.run_module("aisle", run_name="__main__", alter_sys=True)
"""


def _worker(shop: dict[str, Path], log: Path, *args: str, pipeline: Path | None = None,
            held_at_publish: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
               **_settings_env(pipeline or shop["pipeline"], **env)}
    start = ["-m", "aisle"] if held_at_publish is None else ["-c", HELD_AT_PUBLISH, str(held_at_publish)]
    return subprocess.Popen([sys.executable, *start, "worker", "--bundle", str(shop["registry"]), "--store",
                             str(shop["store"]), *args], env=environ, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _wait_for(what: str, check: object, seconds: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    said = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{said}")


def _said(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


def _folded_since(reg: Registry, version: str) -> int:
    """Events folded by the refresh versions promoted after `version`, along the promotion chain."""
    chain = reg.chain()
    total = 0
    for v in chain[chain.index(version) + 1:]:
        d = reg.decision(v)
        assert d is not None and d.kind == "refresh"
        total += int(d.extra["events"])
    return total


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path / "redis") as url:
        yield url


def test_two_workers_one_trains_the_other_waits_and_takes_over_after_kill_9(shop: dict[str, Path],
                                                                            redis_url: str) -> None:
    reg = Registry(shop["registry"])
    later = pl.read_parquet(shop["later"])
    logs = shop["tmp"] / "a.log", shop["tmp"] / "b.log"
    fast = {"AISLE_WORKER__LEASE_TTL_SECONDS": "2", "AISLE_WORKER__REFRESH_SECONDS": "0.5"}
    a = _worker(shop, logs[0], "--state", redis_url, **fast)
    b = None
    try:
        _wait_for("the first worker to hold the lease", lambda: _said(logs[0], "holding the training lease"), 120,
                  logs[0])
        b = _worker(shop, logs[1], "--state", redis_url, **fast)
        _wait_for("the second worker to wait", lambda: _said(logs[1], "waiting for the training lease"), 120, logs[1])
        _append(shop["store"], later.slice(0, 500))
        _wait_for("the first worker's refresh", lambda: reg.decision(reg.current() or "") is not None and
                  reg.decision(reg.current() or "").kind == "refresh", 60, logs[0])  # type: ignore[union-attr]
        assert not _said(logs[1], "holding the training lease")  # it waited all along
        killed = time.monotonic()
        _kill(a)
        _wait_for("the second worker to take over", lambda: _said(logs[1], "holding the training lease"), 30, logs[1])
        took = time.monotonic() - killed
        assert took < 2 + 5, f"took {took:.1f}s"
        before = reg.current()
        _append(shop["store"], later.slice(500, 300))
        _wait_for("the second worker's refresh", lambda: reg.current() != before, 60, logs[1])
        assert _folded_since(reg, reg.chain()[0]) == 800  # each event once, across both workers
    finally:
        _kill(a)
        if b is not None:
            _kill(b)


def test_kill_9_mid_refit_or_refresh_never_leaves_a_partial_current_and_the_next_run_resumes(
        shop: dict[str, Path]) -> None:
    reg = Registry(shop["registry"])
    first = reg.current()
    assert first is not None
    later = pl.read_parquet(shop["later"])
    log = shop["tmp"] / "w.log"
    # a refit killed with its candidate written but not yet published
    _append(shop["store"], later.slice(0, 600))
    reached = shop["tmp"] / "publishing"
    p = _worker(shop, log, "--once", "refit", held_at_publish=reached)
    _wait_for("the refit to reach publishing",
              lambda: (reached.exists() and reached.read_text()) or p.poll() is not None, 180, log)
    assert p.poll() is None, log.read_text()[-3000:]
    assert Path(reached.read_text()).is_dir() and any(reg.versions_dir.glob(".incoming-*"))
    _kill(p)
    assert reg.current() == first and [v.version for v in reg.list()] == [first]
    # refreshes killed at random moments, with new events between them
    rng = random.Random(7)
    posted = 600
    for k in range(3):
        posted += _append(shop["store"], later.slice(600 + 300 * k, 300))
        p = _worker(shop, log, "--once", "refresh")
        time.sleep(rng.uniform(2.0, 9.0))
        _kill(p)
        current = reg.current()
        assert current is not None and (reg.path(current) / "manifest.json").is_file()
    p = _worker(shop, log, "--once", "refresh")
    assert p.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert not list(reg.versions_dir.glob(".incoming-*"))  # the lease holder cleared what the killed ones left
    decision = reg.decision(reg.current())  # type: ignore[arg-type]
    with open_store(shop["store"], read_only=True) as s:
        _, position = s.read_events_since(0)
    assert decision is not None and decision.extra["watermark"] == position
    assert _folded_since(reg, first) == posted  # nothing counted twice, nothing lost


def test_a_regressing_candidate_is_refused_and_current_does_not_change(shop: dict[str, Path]) -> None:
    reg = Registry(shop["registry"])
    first = reg.current()
    _append(shop["store"], pl.read_parquet(shop["later"]))
    log = shop["tmp"] / "weak.log"
    p = _worker(shop, log, "--once", "refit", pipeline=shop["weak"])  # trending alone: a broken configuration
    assert p.wait(timeout=300) == 3, log.read_text()[-3000:]
    assert reg.current() == first
    refused = [v for v in reg.list() if v.decision is not None and not v.decision.promoted]
    assert len(refused) == 1
    d = refused[0].decision
    assert d is not None and d.candidate["ndcg@10"] < d.serving["ndcg@10"] * 0.95
    assert "refused" in log.read_text() and f"{d.candidate['ndcg@10']:.4f}" in log.read_text()
    out = subprocess.run([sys.executable, "-m", "aisle", "bundles", "list", "--registry", str(shop["registry"])],
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "250",
                                                              "PYTHONPATH": os.pathsep.join(sys.path)}, check=True)
    row = next(line for line in out.stdout.splitlines() if refused[0].version in line)
    assert f"{d.candidate['ndcg@10']:.4f}" in row and f"{d.serving['ndcg@10']:.4f}" in row and " no " in row
    # the refused attempt counts: the next refit waits for `refit_events` more events, refreshes go on meanwhile
    settings = load_settings(None, env=_settings_env(shop["pipeline"], AISLE_WORKER__REFIT_EVENTS="100"),
                             bundle=shop["registry"], store=str(shop["store"]))
    worker = Worker(settings)
    assert worker.due() == "refresh"
    worker.start()
    try:
        _append(shop["store"], pl.read_parquet(shop["later"]).with_columns(
            pl.col("event_id").fill_null("") + "-again", pl.col("timestamp") + pl.duration(days=1)).head(150))
        assert worker.run("refresh").decision.promoted  # type: ignore[union-attr]
        assert worker.due() == "refit"
    finally:
        worker.lease.release()


def test_a_version_published_by_hand_is_compared_only_on_events_it_never_saw(shop: dict[str, Path]) -> None:
    """`aisle train` on the store, `aisle bundles publish`, then the worker: the first refit's gate scores both on
    the events after the published bundle's newest one (scored on events it was fitted on, the published bundle
    would win every comparison and no refit would ever be promoted)."""
    from aisle.bundle import build_serving_bundle, fingerprint
    from aisle.cli.train import load_config
    from aisle.pipeline import PipelineConfig
    from aisle.registry import Decision

    pipeline = PipelineConfig().updated(load_config(shop["pipeline"])["pipeline"])
    with open_store(shop["store"], read_only=True) as s:
        data = s.read_dataset()
    hand = build_serving_bundle(data, pipeline, dense=False)
    hand.save(shop["tmp"] / "hand", data_fingerprint=fingerprint(data.events), metrics=hand.manifest["metrics"])
    reg = Registry(shop["tmp"] / "by-hand")
    first = reg.publish(shop["tmp"] / "hand", Decision("manual", True, "published by hand"))
    _append(shop["store"], pl.read_parquet(shop["later"]))
    settings = load_settings(None, env=_settings_env(shop["pipeline"]), bundle=reg.root, store=str(shop["store"]))
    assert Worker(settings, pipeline=pipeline).due() == "refit"  # no watermark: nothing to refresh from
    out = run_job(settings, pipeline=pipeline)
    d = out.decision
    assert d is not None and "never saw" in d.extra["baseline"]
    assert d.candidate["users"] == d.serving["users"] > 50 and d.extra["holdout_events"] <= 1500
    assert d.promoted and reg.current() == out.version != first, d.reason  # the same pipeline on more data


def test_the_worker_compacts_on_its_schedule_and_erased_bytes_leave_the_store(shop: dict[str, Path]) -> None:
    """`compact_hours`: the loop compacts when due (and records it), so an erased shopper's rows, deleted by the
    servers, leave the DuckDB file without anyone running `aisle compact` by hand."""
    secret = "erased-by-the-loop-5d1e"
    later = pl.read_parquet(shop["later"])
    mine = later.head(5).with_columns(pl.lit(secret).alias("user_id"), pl.col("event_id").fill_null("") + "-secret")
    # amid other shoppers' rows: DuckDB drops a row group whose rows were all deleted at its next checkpoint by
    # itself; rows deleted among live ones stay in the file's blocks until a compaction
    _append(shop["store"], pl.concat([later.slice(5, 1500), mine, later.slice(1505, 1500)]))
    sink = StoreSink(shop["store"])
    try:
        with sink.locked() as s:
            assert s.delete_user(secret) == 5
    finally:
        sink.close()
    files = [shop["store"], Path(f"{shop['store']}.wal")]

    def found() -> bool:
        return any(secret.encode() in f.read_bytes() for f in files if f.exists())

    assert found(), "the deleted rows' bytes should still be in the store's files"
    settings = load_settings(None, env=_settings_env(shop["pipeline"], AISLE_WORKER__COMPACT_HOURS="0.001"),
                             bundle=shop["registry"], store=str(shop["store"]))
    worker = Worker(settings)
    assert worker.compact_due()
    stop = threading.Event()
    runner = threading.Thread(target=worker.run_forever, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 120
        while "compacted_at" not in worker.checkpoint():
            assert time.monotonic() < deadline, "the loop did not compact"
            time.sleep(0.5)
    finally:
        stop.set()
        runner.join(timeout=120)
    assert not found()
    assert not worker.compact_due()  # recorded: the next one waits for compact_hours
    off = load_settings(None, env=_settings_env(shop["pipeline"], AISLE_WORKER__COMPACT_HOURS="0"),
                        bundle=shop["registry"], store=str(shop["store"]))
    assert not Worker(off).compact_due()


def test_a_pair_bought_together_after_the_fit_is_on_the_item_page_after_a_refresh(shop: dict[str, Path]) -> None:
    """Bought-together counts are refreshed, not refit-only: two shoppers buy the same two items, `aisle worker
    --once refresh` folds their baskets in, and the server following the registry lists each item on the other's
    bought-together page (a rule needs 2 baskets by default: one basket is not enough)."""
    reg = Registry(shop["registry"])
    with open_store(shop["store"], read_only=True) as s:
        items = s.items().filter(pl.col("available"))["item_id"].to_list()  # item pages list those in stock
        events = s.read_events_since(0)[0]
    newest = events["timestamp"].max()
    shoppers = events["user_id"].unique().sort().to_list()[:2]
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def together(h: httpx.Client, a: str) -> list[str]:
        r = h.get(f"/items/{a}/bought-together", params={"k": 50})
        r.raise_for_status()
        return [c["item_id"] for c in r.json()["items"] if c["explanation"]["type"] == "bought_together"]

    def buy(pair: tuple[str, str], who: list[str], minutes: int) -> None:
        at = newest + timedelta(minutes=minutes)
        _append(shop["store"], events_frame([Event(u, i, EventType.PURCHASE, at + timedelta(seconds=k),
                                                   event_id=f"pair-{minutes}-{u}-{i}")
                                             for u in who for k, i in enumerate(pair)]))

    def refresh(name: str) -> None:
        p = _worker(shop, shop["tmp"] / f"{name}.log", "--once", "refresh")
        assert p.wait(timeout=300) == 0, (shop["tmp"] / f"{name}.log").read_text()[-3000:]

    log = shop["tmp"] / "serve.log"
    with aisle_process(["serve", "--bundle", str(reg.root), "--port", str(port), "--follow", "0.5"], log) as srv, \
            httpx.Client(base_url=url, timeout=30) as h:
        wait_ready(url, srv, output=lambda: log.read_text(errors="replace"))
        a, b = next((x, y) for x in items[5:] for y in items[40:] if x != y and y not in together(h, x))
        buy((a, b), shoppers[:1], minutes=10)  # one basket: below min_count
        for name, who, minutes in (("one", shoppers[:1], 10), ("two", shoppers[1:], 20)):
            buy((a, b), who, minutes=minutes)  # one basket is below min_count; a second one, by another shopper,
            refresh(name)                      # makes the rule
            version = reg.current()
            _wait_for(f"the server to load {version}", lambda v=version: h.get("/health").json()[
                "registry_version"] == v, 90, log)
            if name == "one":
                assert b not in together(h, a)
        assert b in together(h, a) and a in together(h, b), (together(h, a), together(h, b))
    d = reg.decision(reg.current())  # type: ignore[arg-type]
    assert d is not None and d.kind == "refresh" and "fbt" in d.extra["updated_sources"]
