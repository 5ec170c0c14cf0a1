"""The store feeds training: `store:PATH` as a source, `aisle export`, and ingest -> train -> serve as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aisle.cli import app
from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.data.readers import read_dataspec
from aisle.store import Store
from tests.redisserver import free_port
from tests.serving import wait_ready

runner = CliRunner()
SMALL = ["--items", "200", "--users", "100", "--events", "5000", "--seed", "3"]


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small synthetic `aisle:` folder and the store it was ingested into."""
    root = tmp_path_factory.mktemp("shop")
    _ok(runner.invoke(app, ["generate", "--out", str(root / "shop"), *SMALL]))
    _ok(runner.invoke(app, ["ingest", f"aisle:{root / 'shop'}", "--db", str(root / "shop.duckdb")]))
    return root / "shop", root / "shop.duckdb"


def _rows(db: Path) -> dict[str, object]:
    with Store(db, read_only=True) as store:
        return {"items": store.items(), "users": store.users(), "events": store.events(), "stats": store.stats()}


def test_export_round_trips_the_store(shop: tuple[Path, Path], tmp_path: Path) -> None:
    _, db = shop
    out = _ok(runner.invoke(app, ["export", "--db", str(db), "--out", str(tmp_path / "export")]))
    assert "events.parquet" in out
    assert {p.name for p in (tmp_path / "export").iterdir()} == {"items.parquet", "users.parquet", "events.parquet",
                                                                "impressions.parquet"}
    _ok(runner.invoke(app, ["ingest", f"aisle:{tmp_path / 'export'}", "--db", str(tmp_path / "copy.duckdb")]))
    before, after = _rows(db), _rows(tmp_path / "copy.duckdb")
    assert after["stats"] == before["stats"] and before["stats"].events == 5000
    for table in ("items", "users", "events"):
        assert after[table].equals(before[table]), table


def test_export_of_a_missing_store_is_a_clean_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["export", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no Aisle store here" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()


def test_store_source_is_the_ingested_data(shop: tuple[Path, Path]) -> None:
    folder, db = shop
    stored, original = read_dataspec(f"store:{db}"), read_dataspec(f"aisle:{folder}")
    for table, key in (("items", ["item_id"]), ("users", ["user_id"]), ("events", ["event_id"])):
        assert getattr(stored, table).sort(key).equals(getattr(original, table).sort(key)), table
    assert stored.accounting()["events"] == {"total": 5000, "loaded": 5000, "rejected": 0}


def test_store_source_refuses_options_folders_and_other_files(shop: tuple[Path, Path], tmp_path: Path) -> None:
    folder, db = shop
    with pytest.raises(ValueError, match="takes no options"):
        read_dataspec(f"store:{db}?user_id=x")
    with pytest.raises(ValueError, match="is `aisle:`"):
        read_dataspec(f"store:{folder}")
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database")
    r = runner.invoke(app, ["train", f"store:{junk}", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "cannot read this Aisle store" in r.stderr and "Traceback" not in r.output


def test_evaluate_reads_the_store(shop: tuple[Path, Path], tmp_path: Path) -> None:
    _, db = shop
    out = tmp_path / "eval.json"
    _ok(runner.invoke(app, ["evaluate", f"store:{db}", "--models", "pop,markov", "--max-trials", "1",
                            "--json", str(out)]))
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"pop", "markov"} and result["models"]["markov"]["NDCG@10"] > 0


# ---- real processes: ingest -> train store: -> serve ----------------------------------------------------------


def _aisle(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does, in a new process on this interpreter and these sources."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "aisle", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc



@pytest.mark.slow
def test_ingest_train_from_store_and_serve(tmp_path: Path) -> None:
    _aisle("generate", "--out", str(tmp_path / "shop"), *SMALL)
    db, bundle = tmp_path / "S.duckdb", tmp_path / "B"
    _aisle("ingest", f"aisle:{tmp_path / 'shop'}", "--db", str(db))
    config = tmp_path / "fast.json"
    config.write_text(json.dumps({"pipeline": {"sources": DEMO_SOURCES_FAST}}))
    _aisle("train", f"store:{db}", "--out", str(bundle), "--config", str(config), "--no-dense")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(bundle), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server, output=lambda: server.stdout.read() if server.stdout and server.poll() is not None
                   else "")
        user = read_dataspec(f"store:{db}").events["user_id"][0]
        recs = httpx.get(f"{url}/users/{user}/recommendations", params={"k": 5}, timeout=10)
        assert recs.status_code == 200, recs.text
        body = recs.json()
        assert body["known_user"] and len(body["items"]) == 5
        assert httpx.get(f"{url}/search", params={"q": "shoes"}, timeout=10).status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
