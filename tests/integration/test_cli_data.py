"""The data commands end to end, through the same entry point a user types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisle.cli import app
from tests.conftest import FIXTURES, shared_path

runner = CliRunner()


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ingest_json_report_and_idempotent_reingest(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    spec = f"s3rec:{FIXTURES / 's3rec' / 'Tiny.txt'}"
    first = _json(runner.invoke(app, ["ingest", spec, "--db", str(db), "--json"]))
    assert (first["events"], first["users"], first["items"]) == (9, 3, 5)
    assert first["tables"]["events"] == {"total": 9, "loaded": 9, "rejected": 0, "inserted": 9, "duplicates": 0}
    again = _json(runner.invoke(app, ["ingest", spec, "--db", str(db), "--json"]))
    assert again["tables"]["events"]["inserted"] == 0 and again["tables"]["events"]["duplicates"] == 9
    stats = _json(runner.invoke(app, ["stats", "--db", str(db), "--json"]))
    assert (stats["events"], stats["users"], stats["items"]) == (9, 3, 5)


def test_bad_row_fails_by_default_with_file_line_field_reason(tmp_path: Path) -> None:
    bad = tmp_path / "Bad.txt"
    bad.write_text("1 1 2\n2 3 x-y 4\n")
    result = runner.invoke(app, ["ingest", f"s3rec:{bad}", "--db", str(tmp_path / "b.duckdb")])
    assert result.exit_code == 1
    assert f"{bad}:2: events field 'item_id': bad item id 'x-y'" in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_skip_accounts_for_every_row_and_writes_rejects(tmp_path: Path) -> None:
    bad = tmp_path / "Bad.txt"
    bad.write_text("1 1 2\n2 3 x-y 4\n3 5\n")
    rejects = tmp_path / "rej.jsonl"
    result = runner.invoke(app, ["ingest", f"s3rec:{bad}", "--db", str(tmp_path / "b.duckdb"), "--on-error", "skip",
                                 "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    assert "events: loaded 3 + rejected 3 = total 6" in result.stdout
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert len(lines) == 3 and {r["line"] for r in lines} == {2} and lines[0]["field"] == "item_id"


def test_unknown_format_and_missing_file_are_clean_errors(tmp_path: Path) -> None:
    r1 = runner.invoke(app, ["ingest", "nope:x.txt", "--db", str(tmp_path / "c.duckdb")])
    assert r1.exit_code == 2 and "unknown data format 'nope'" in r1.stderr
    r2 = runner.invoke(app, ["ingest", f"s3rec:{tmp_path / 'missing.txt'}", "--db", str(tmp_path / "c.duckdb")])
    assert r2.exit_code == 2 and "no such file" in r2.stderr
    r3 = runner.invoke(app, ["stats", "--db", str(tmp_path / "none.duckdb")])
    assert r3.exit_code == 2 and "no Aisle store" in r3.stderr


def test_generate_then_ingest_synthetic_store(tmp_path: Path) -> None:
    out = tmp_path / "store"
    gen = runner.invoke(app, ["generate", "--out", str(out), "--items", "300", "--users", "100", "--events", "5000"])
    assert gen.exit_code == 0, gen.output
    report = _json(runner.invoke(app, ["ingest", f"aisle:{out}", "--db", str(tmp_path / "s.duckdb"), "--json"]))
    assert report["tables"]["items"]["loaded"] == 300
    assert report["tables"]["events"]["rejected"] == 0
    assert abs(report["events"] - 5000) <= 50


@pytest.mark.realdata
def test_acceptance_beauty_ingest_counts(tmp_path: Path) -> None:
    beauty = shared_path("amazon-s3rec/Beauty.txt")
    report = _json(runner.invoke(app, ["ingest", f"s3rec:{beauty}", "--db", str(tmp_path / "x.duckdb"), "--json"]))
    assert (report["events"], report["users"], report["items"]) == (198_502, 22_363, 12_101)
    assert report["store"]["events"] == 198_502
