"""Every bundle the CLI writes is servable, or the CLI refuses it with a message; under torchrun one rank writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aisle.bundle import Bundle, NotServableError, serving_problem
from aisle.cli import app
from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.config import Settings
from aisle.serve import create_app

runner = CliRunner()
AUDIT = Path(__file__).parent / "ddp" / "audit_writes.py"
SMALL = ["--items", "200", "--users", "100", "--events", "4000", "--seed", "5"]


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small shop, its fast-sources config, a serving bundle and a model bundle trained on it."""
    root = tmp_path_factory.mktemp("servable")
    paths = {"shop": root / "shop", "config": root / "fast.json", "serving": root / "serving",
             "model": root / "model"}
    assert runner.invoke(app, ["generate", "--out", str(paths["shop"]), *SMALL]).exit_code == 0
    paths["store"] = root / "shop.duckdb"
    assert runner.invoke(app, ["ingest", f"aisle:{paths['shop']}", "--db", str(paths["store"])]).exit_code == 0
    paths["config"].write_text(json.dumps({"pipeline": {"sources": DEMO_SOURCES_FAST}}))
    r = runner.invoke(app, ["train", f"aisle:{paths['shop']}", "--out", str(paths["serving"]), "--config",
                            str(paths["config"]), "--no-dense"])
    assert r.exit_code == 0, r.output
    paths["model_output"] = root / "model-output.txt"
    r = runner.invoke(app, ["train", f"aisle:{paths['shop']}", "--out", str(paths["model"]), "--model",
                            "itemknn,pop"])
    assert r.exit_code == 0, r.output
    paths["model_output"].write_text(r.output)
    return paths


def test_train_model_says_its_bundle_is_not_for_serving(built: dict[str, Path]) -> None:
    out = _flat(built["model_output"].read_text())
    assert "Model bundle written to" in out and "not for serving" in out and "without --model" in out


def test_serve_refuses_a_model_bundle_with_how_to_build_one(built: dict[str, Path]) -> None:
    r = runner.invoke(app, ["serve", "--bundle", str(built["model"]), "--port", "1"])
    assert r.exit_code == 2, r.output
    message = _flat(r.stderr)
    assert "model bundle (models: itemknn, pop" in message and "not a serving bundle" in message
    assert "aisle train DATASPEC --out DIR" in message and "Traceback" not in r.output


def test_serve_refuses_a_folder_without_a_bundle_or_with_a_broken_manifest(tmp_path: Path) -> None:
    r = runner.invoke(app, ["serve", "--bundle", str(tmp_path), "--port", "1"])
    assert r.exit_code == 2 and "no bundle here" in _flat(r.stderr)
    (tmp_path / "manifest.json").write_text("{half a manif")
    r = runner.invoke(app, ["serve", "--bundle", str(tmp_path), "--port", "1"])
    assert r.exit_code == 2 and "not a bundle manifest" in _flat(r.stderr) and "Traceback" not in r.output


def test_bundle_load_require_serving(built: dict[str, Path]) -> None:
    assert serving_problem(built["serving"]) is None
    assert Bundle.load(built["serving"], search=False, require_serving=True).pipeline is not None
    with pytest.raises(NotServableError, match="not a serving bundle"):
        Bundle.load(built["model"], require_serving=True)
    assert set(Bundle.load(built["model"]).models) == {"itemknn", "pop"}  # still loads for evaluation


def test_reload_refuses_a_model_bundle_and_keeps_serving(built: dict[str, Path]) -> None:
    with TestClient(create_app(Settings(bundle=built["serving"]))) as c:
        version = c.get("/ready").json()
        r = c.post("/admin/reload", json={"path": str(built["model"])})
        assert r.status_code == 409 and "not a serving bundle" in r.text
        assert c.get("/ready").json() == version
        assert c.get("/search", params={"q": "shoes"}).status_code == 200


@pytest.mark.slow
def test_under_torchrun_only_rank_0_writes_the_serving_bundle(built: dict[str, Path], tmp_path: Path) -> None:
    """Both ranks read the same store (read-only, at once) and build; rank 0 alone writes the folder."""
    out, log = tmp_path / "bundle", tmp_path / "writes"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path),
           "TMPDIR": str(tmp_path)}  # torchrun's torchelastic_* folders stay in the test's own
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(AUDIT), str(out), str(log), "train", f"store:{built['store']}", "--out", str(out),
                           "--config", str(built["config"]), "--no-dense"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    writes = {rank: json.loads((tmp_path / f"writes.{rank}.json").read_text()) for rank in (0, 1)}
    assert writes[1] == [], writes[1][:5]  # rank 1 never made a folder or wrote a file there
    written = {Path(path).name for _event, path in writes[0]}
    assert {"manifest.json", "items.json", "users.json", "histories.npz"} <= written
    assert proc.stdout.count("Bundle written to") == 1
    bundle = Bundle.load(out, require_serving=True)
    assert bundle.pipeline is not None and bundle.search is not None and len(bundle.items) > 0
