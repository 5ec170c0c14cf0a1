"""`aisle demo` end to end on a small store (--fast: no deep or text model; --no-serve: stop before serving)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aisle.cli import app


def test_demo_generates_trains_evaluates_and_leaves_a_servable_bundle(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path), "--items", "300", "--users", "150",
                                 "--events", "8000", "--fast", "--no-serve"])
    assert r.exit_code == 0, r.output
    for step in ("1. generate", "2. ingest", "3. train", "4. evaluate"):
        assert step in r.output
    assert "NDCG@10" in r.output and "pipeline" in r.output
    assert "Serving bundle for store:" in " ".join(r.output.split())  # trained from the store it ingested
    bundle = tmp_path / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {"catalog", "histories", "pipeline", "search", "report"} <= set(manifest["parts"])
    report = json.loads((bundle / "report.json").read_text())
    assert report["ranking"] == "full" and {"pipeline", "markov", "itemknn"} <= set(report["models"])
    assert 0.0 < report["models"]["pipeline"]["NDCG@10"] <= 1.0
    from fastapi.testclient import TestClient

    from aisle.config import Settings
    from aisle.serve import create_app

    with TestClient(create_app(Settings(bundle=bundle))) as c:
        stats = c.get("/api/stats").json()
        assert stats["offline_report"]["models"]["pipeline"]["NDCG@10"] == report["models"]["pipeline"]["NDCG@10"]
        assert c.get("/search", params={"q": "boots"}).status_code == 200
