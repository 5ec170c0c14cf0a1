"""The published OpenAPI is the truth: schemathesis fuzzes a real `aisle serve` with every check it has.

A bundle is built from a small synthetic store and served by the real CLI (one uvicorn worker, keys from a
0600 key file). Schemathesis generates requests for every operation from the published schema, positive and
negative, sends them with the write key, and runs `--checks all`: no 5xx, every status documented, every body
and content type as published, invalid data refused, valid data accepted, auth not ignored, 405s with Allow.
The run must find nothing and send at least `MIN_REQUESTS` requests (counted by the server's own /metrics);
the count is printed.

Phases: examples, coverage and fuzzing. The stateful phase is left out on purpose: it assumes that after
`DELETE /users/{id}` the "resource" `GET /users/{id}/recommendations` must be a 404, while erasing a shopper
here means they get cold-start recommendations like any unknown visitor (by design: the id may come back).
`schemathesis_hooks.py` teaches the fuzzer the two rules JSON Schema cannot state; `schemathesis.toml` gives
the two slow writes fewer examples.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import aisle
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from tests.bundles import save_bundle, synthetic_shop
from tests.contract.schemathesis_hooks import WIRE_STRING_LISTS
from tests.redisserver import free_port
from tests.serving import wait_ready

HERE = Path(__file__).resolve().parent
SRC = Path(aisle.__file__).resolve().parents[1]  # the sources this test imports, for its subprocesses
KEY = "fuzz-write-key"
MIN_REQUESTS = 3_000
MAX_EXAMPLES = 300  # per operation (the slow writes: schemathesis.toml)

pytestmark = pytest.mark.slow



def _served(base: str) -> tuple[int, int]:
    """(requests answered, of which 5xx) so far, from the server's Prometheus counters."""
    total = errors = 0
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("aisle_requests_total{"):
            n = int(float(line.rsplit(" ", 1)[1]))
            total += n
            errors += n if 'status="5' in line else 0
    return total, errors


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz")
    shop = synthetic_shop(SyntheticConfig(n_items=200, n_users=100, n_events=4_000, seed=3))
    sources = (SourceSpec("als", "als", "user", {"factors": 16, "iterations": 5}),
               SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))
    save_bundle(shop, sources, root / "bundle", rounds=10)
    keys = root / "keys"
    keys.write_text(KEY + "\n")
    keys.chmod(0o600)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "aisle", "serve", "--bundle", str(root / "bundle"), "--port",
                             str(port), "--api-key-file", str(keys), "--store", str(root / "live.duckdb")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, output=lambda: proc.stderr.read().decode() if proc.stderr and proc.poll() is not None
                   else "")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_published_list_parameters_are_plain_string_lists(server: str) -> None:
    """The hook's WIRE_STRING_LISTS must name exactly the unconstrained string lists of the schema."""
    schema = httpx.get(f"{server}/openapi.json").json()
    lists = set()
    for item in schema["paths"].values():
        for op in item.values():
            for p in op.get("parameters", ()):
                options = p["schema"].get("anyOf", [p["schema"]])
                if p["in"] == "query" and any(o.get("type") == "array" for o in options):
                    arrays = [o for o in options if o.get("type") == "array"]
                    assert arrays == [{"type": "array", "items": {"type": "string"}}], p
                    lists.add(p["name"])
    assert lists == WIRE_STRING_LISTS


def test_schemathesis_finds_nothing(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert exe, "schemathesis is a dev dependency (pip install -e '.[dev]')"
    before, _ = _served(server)
    report = tmp_path / "schemathesis.json"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py"),
           "PYTHONPATH": f"{SRC}{os.pathsep}{HERE.parents[1]}"}
    t0 = time.perf_counter()
    run = subprocess.run(
        [exe, "--config-file", str(HERE / "schemathesis.toml"), "run", f"{server}/openapi.json",
         "--checks", "all", "--header", f"X-API-Key: {KEY}", "--max-examples", str(MAX_EXAMPLES), "--seed", "18",
         "--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-color", "--generation-database", "none",
         "--report", "json", "--report-json-path", str(report)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=540, check=False)  # its cache: tmp_path
    seconds = time.perf_counter() - t0
    after, errors = _served(server)
    requests = after - before - 1  # less the /metrics call that read `before`
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    with capsys.disabled():
        print(f"\nschemathesis --checks all: {requests:,} requests ({cases['generated']:,} test cases) over "
              f"{summary['operations']['tested']} operations in {seconds:.0f}s; failures {len(summary['failures'])},"
              f" server errors {errors}, failures dropped by the wire-string filter {summary['filtered']}")
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert summary["failures"] == [] and summary["errors"] == [], summary["failures"] or summary["errors"]
    assert summary["operations"]["tested"] == summary["operations"]["total"]
    assert errors == 0
    assert requests >= MIN_REQUESTS
