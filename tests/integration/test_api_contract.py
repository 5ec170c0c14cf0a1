"""The API keeps the ingest rules and the contract it publishes (issue 18), through the real app over HTTP.

One bundle is built for the module from a small synthetic store; each test talks to `create_app` with
TestClient (keys configured, so the write routes are guarded), or to a real `aisle serve` for the worker test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import aisle
from aisle.config import Settings
from aisle.data.readers import read_dataspec
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from aisle.serve import create_app
from tests.bundles import save_bundle, synthetic_shop
from tests.redisserver import free_port
from tests.serving import aisle_process, wait_ready

KEY = "contract-key"
SRC = Path(aisle.__file__).resolve().parents[1]  # the sources this test imports, for its subprocesses


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shop = synthetic_shop(SyntheticConfig(n_items=150, n_users=80, n_events=3_000, seed=5))
    sources = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))
    return save_bundle(shop, sources, tmp_path_factory.mktemp("contract") / "bundle", rounds=5)


@pytest.fixture
def client(bundle_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(bundle=bundle_dir, store=tmp_path / "live.duckdb", api_keys=(KEY,), max_body_bytes=2_000)
    with TestClient(create_app(settings)) as c:
        yield c


def _post(client: TestClient, event: dict) -> httpx.Response:
    # json.dumps writes NaN and Infinity as Python's json module reads them (httpx's json= refuses to)
    return client.post("/events", content=json.dumps({"events": [event]}),
                       headers={"X-API-Key": KEY, "Content-Type": "application/json"})


def _msgs(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation" and isinstance(body["detail"], list), body
    return [d["msg"] for d in body["detail"]]


GOOD = {"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": "2026-01-02T03:04:05Z"}


# ---- 1. one validation, whichever path -------------------------------------------------------------------


def test_api_refuses_what_ingest_refuses_with_the_same_messages(client: TestClient, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b"user_id,item_id,event_type,timestamp,value\n"
                    b"u1,,view,2026-01-02T03:04:05Z,\n"          # empty item id
                    b"u\x001,i1,view,2026-01-02T03:04:05Z,\n"    # NUL in the user id
                    b"u1,i1,view,2026-01-02T03:04:05Z,NaN\n"     # NaN value
                    b"u1,i1,view,1970-01-01T00:00:00Z,\n"        # 1970
                    b"u1,i1,view,9999-12-31T00:00:00Z,\n"        # 9999
                    b"u1,i1,buy,2026-01-02T03:04:05Z,\n")        # unknown type
    ingest = [r.reason for r in read_dataspec(f"csv:{csv}", on_error="skip").log.rejects]

    api = [
        _msgs(_post(client, {**GOOD, "item_id": ""})),
        _msgs(_post(client, {**GOOD, "user_id": "u\x001"})),
        _msgs(_post(client, {**GOOD, "value": float("nan")})),
        _msgs(_post(client, {**GOOD, "timestamp": "1970-01-01T00:00:00Z"})),
        _msgs(_post(client, {**GOOD, "timestamp": "9999-12-31T00:00:00Z"})),
        _msgs(_post(client, {**GOOD, "event_type": "buy"})),
    ]
    assert api[0] == [ingest[0]] == ["missing item id"]
    assert api[1] == [ingest[1]] == ["user id contains a control character"]
    assert api[2] == ["value 'nan' is not a finite number"] and ingest[2] == "value 'NaN' is not a finite number"
    for got, want in zip(api[3:5], ingest[3:5], strict=True):  # same rule; each side shows the value it got
        assert got[0].startswith("timestamp '") and want.startswith("timestamp '")
        assert got[0].endswith("is outside the accepted window (1995-01-01 to now + 1 day)")
        assert want.endswith("is outside the accepted window (1995-01-01 to now + 1 day)")
    assert api[5] == [ingest[5]]
    # and what JSON adds: timestamp 0 (1970 as a number), a boolean value
    assert _msgs(_post(client, {**GOOD, "timestamp": 0})) == ["timestamp '0' is not an ISO 8601 date-time string"]
    assert _msgs(_post(client, {**GOOD, "value": False})) == ["value 'false' is not a finite number"]
    # nothing of it was stored: the good event is the first one accepted
    assert _post(client, GOOD).json()["accepted"] == 1


def test_put_items_refuses_infinite_price_and_control_characters(client: TestClient) -> None:
    def put(item: dict) -> httpx.Response:
        return client.put("/items", content=json.dumps({"items": [item]}),
                          headers={"X-API-Key": KEY, "Content-Type": "application/json"})

    assert _msgs(put({"item_id": "n1", "price": float("inf")})) == ["price 'inf' is not a number"]
    assert _msgs(put({"item_id": "n1", "price": -1})) == ["negative price -1.0"]
    assert _msgs(put({"item_id": "n\x07"})) == ["item id contains a control character"]
    assert _msgs(put({"item_id": "n1", "available": "yes"}))  # a JSON boolean, not text
    assert put({"item_id": "n1", "price": 3.5}).status_code == 200


# ---- 2. the published contract ---------------------------------------------------------------------------


def test_schema_states_the_servers_limits_errors_and_security(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    max_k = client.app.state.services.settings.max_k
    k_routes = ["/users/{user_id}/recommendations", "/items/{item_id}/similar", "/items/{item_id}/bought-together",
                "/trending"]
    for path in k_routes:
        k = next(p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "k")
        assert k["schema"]["maximum"] == max_k, path
        r = client.get(path.replace("{user_id}", "u1").replace("{item_id}", "i1"), params={"k": max_k + 1})
        assert r.json() == {"error": "validation", "detail": [
            {"loc": ["query", "k"], "msg": f"k must be at most {max_k}", "type": "less_than_equal"}]}
    r = client.get("/trending", params={"price_min": 5, "price_max": 1})
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)

    error_ref = "#/components/schemas/ErrorOut"
    for path, item in schema["paths"].items():
        for op in item.values():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")) and not (path == "/ready" and status == "503"):
                    assert resp["content"]["application/json"]["schema"] == {"$ref": error_ref}, (path, status)
    events = schema["paths"]["/events"]["post"]
    assert {"400", "401", "403", "413", "422", "503"} <= set(events["responses"])
    assert events["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "A write key (--api-key) for writes; an admin key for /admin/*."}
    assert set(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_405_keeps_its_allow_header(client: TestClient) -> None:
    r = client.put("/trending")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.json()["error"] == "method_not_allowed"


# ---- 3. auth before the body, 413 however the body comes, static files -----------------------------------


def test_key_is_checked_before_the_body(client: TestClient) -> None:
    bad = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    assert client.post("/events", **bad).status_code == 401
    assert client.put("/items", **bad).status_code == 401
    assert client.post("/admin/reload", **bad).status_code == 401
    assert client.post("/events", content=b"{not json", headers={"Content-Type": "application/json",
                                                                  "X-API-Key": "wrong"}).status_code == 403
    assert client.post("/events", content=b"{not json", headers={"Content-Type": "application/json",
                                                                  "X-API-Key": KEY}).status_code == 422


def test_oversized_body_is_413_with_a_length_or_chunked(client: TestClient) -> None:
    body = b'{"events": [' + b" " * 3_000 + b"]}"
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    sized = client.post("/events", content=body, headers=headers)
    assert sized.status_code == 413 and sized.json()["error"] == "too_large"

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 500):
            yield body[i:i + 500]

    chunked = client.post("/events", content=chunks(), headers=headers)
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert chunked.status_code == 413 and chunked.json()["error"] == "too_large"


def test_static_files_refuse_control_characters_and_speak_http_caching(client: TestClient) -> None:
    for path in ("/web/%00", "/web/style.css%00", "/web/%0a", "/web/../pyproject.toml", "/web/nope.css"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"] == "not_found"
    r = client.get("/web/style.css")
    assert r.status_code == 200 and r.headers["etag"] and r.headers["cache-control"] == "no-cache"
    assert client.get("/web/style.css", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert client.head("/web/style.css").status_code == 200
    part = client.get("/web/style.css", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and len(part.content) == 10


# ---- 5. keys reach the workers without the environment ---------------------------------------------------


def _descendants(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out += [int(entry.name), *_descendants(int(entry.name))]
    return out


def test_api_key_file_must_be_private(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# write keys\nk1\n")
    keys.chmod(0o644)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "aisle", "serve", "--api-key-file", str(keys), "--bundle", str(tmp_path / "none")]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "readable by others" in " ".join(refused.stderr.split())
    keys.chmod(0o600)
    taken = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert taken.returncode == 2 and "no bundle here" in taken.stderr  # the keys were read; the bundle is missing


@contextlib.contextmanager
def _serving(bundle_dir: Path, tmp: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`aisle serve` over `bundle_dir` with `tmp` as its temp directory (its log beside it), once ready."""
    port = free_port()
    tmp.mkdir(exist_ok=True)
    log = tmp.parent / f"serve-{port}.log"
    with aisle_process(["serve", "--bundle", str(bundle_dir), "--port", str(port), *args], log,
                       TMPDIR=str(tmp)) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc, output=lambda: log.read_text(errors="replace"))
        yield proc, base


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_get_keys_from_a_private_file_not_the_environment(bundle_dir: Path, tmp_path: Path,
                                                                           workers: int) -> None:
    """...and SIGTERM (docker stop, Kubernetes) removes that file's folder: with one worker uvicorn raises the
    signal again after its own shutdown, which used to end the process before its cleanup."""
    secret = "s3cret-key-not-in-environ"
    tmp = tmp_path / "tmp"
    path = None
    with _serving(bundle_dir, tmp, "--workers", str(workers), "--api-key", secret) as (proc, base):
        event = {"events": [GOOD]}
        assert httpx.post(f"{base}/events", json=event).status_code == 401
        assert httpx.post(f"{base}/events", json=event, headers={"X-API-Key": secret}).status_code == 200
        pids = [proc.pid, *_descendants(proc.pid)]
        assert len(pids) >= (1 if workers == 1 else 3)  # the server, or the supervisor and two workers
        settings_files = set()
        for pid in pids:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert secret.encode() not in environ, f"the key is in the environment of process {pid}"
            for var in environ.split(b"\0"):
                if var.startswith(b"AISLE_SERVE_SETTINGS="):
                    settings_files.add(Path(var.split(b"=", 1)[1].decode()))
        if workers == 1:  # the server reads its settings file itself
            settings_files = {next(tmp.glob("aisle-serve-*/settings.json"))}
        assert len(settings_files) == 1
        (path,) = settings_files
        assert path.parent.parent == tmp
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path is not None and not path.exists()  # removed when the server stops (SIGTERM)
    assert not list(tmp.iterdir())  # the metrics folder of two workers too


@pytest.mark.slow
def test_folders_of_a_killed_server_are_removed_by_the_next_one(bundle_dir: Path, tmp_path: Path) -> None:
    """A server killed outright cannot clean up; the next `aisle serve` removes what it left (API keys included),
    and never the folders of a server that is still running."""
    tmp = tmp_path / "tmp"
    with _serving(bundle_dir, tmp, "--workers", "2", "--api-key", "k1") as (killed, _):
        left = sorted(tmp.iterdir())
        assert [f.name[:11] for f in left] == ["aisle-prom-", "aisle-serve"]
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
    assert all(f.exists() for f in left)
    with _serving(bundle_dir, tmp, "--api-key", "k2"):
        mine = list(tmp.iterdir())
        assert len(mine) == 1 and not any(f.exists() for f in left)
        with _serving(bundle_dir, tmp, "--api-key", "k3"):  # sweeps too, and keeps the running one's
            assert all(f.exists() for f in mine) and len(list(tmp.iterdir())) == 2
    assert not list(tmp.iterdir())
