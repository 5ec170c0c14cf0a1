"""`aisle ingest` on one CSV holding every defect a store's export has shown us: a UTF-8 BOM, a quoted field
across two lines, an ISO time written with a space, a NUL in a user id, an unclosed quote, times in 1970 and
9999, a NaN value, a truncated row. Every physical line of the file must end up loaded or rejected under its own
line number, and `--on-error fail` must name the first bad line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aisle.cli import app
from aisle.store import Store
from tests.conftest import FIXTURES

runner = CliRunner()
DEFECTS = FIXTURES / "csv" / "defects.csv"
SPEC = f"csv:{DEFECTS}?user_id=uid&item_id=sku&timestamp=ts&event_type=action&query=q"

#: user id -> the physical lines its record spans, for every record that must load
LOADED = {"u1": (2, 2), "u2": (3, 4), "u3": (5, 5), "u6": (8, 8), "u7": (9, 9), "u10": (12, 12), "u13": (15, 15)}
#: line -> (field, reason prefix) of every line that must be rejected
REJECTED = {6: ("user_id", "user id contains a control character"),
            7: ("(line)", "unclosed quote"),
            10: ("timestamp", "timestamp '1970-01-01T00:00:00Z' is outside the accepted window"),
            11: ("timestamp", "timestamp '9999-12-31T00:00:00Z' is outside the accepted window"),
            13: ("value", "value 'NaN' is not a finite number"),
            14: ("action", "truncated row: expected 6 fields, got 3")}


def test_every_physical_line_is_loaded_or_rejected_with_its_own_number(tmp_path: Path) -> None:
    db, rejects = tmp_path / "s.duckdb", tmp_path / "rejects.jsonl"
    result = runner.invoke(app, ["ingest", SPEC, "--db", str(db), "--on-error", "skip", "--rejects", str(rejects),
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["tables"]["events"]
    assert (report["loaded"], report["rejected"], report["total"]) == (len(LOADED), len(REJECTED), 13)

    got = {r["line"]: (r["field"], r["reason"]) for r in map(json.loads, rejects.read_text().splitlines())}
    assert set(got) == set(REJECTED)
    for line, (fld, reason) in REJECTED.items():
        assert got[line][0] == fld and got[line][1].startswith(reason), (line, got[line])

    with Store(db) as store:
        events = store.events()
    assert sorted(events["user_id"].to_list()) == sorted(LOADED)
    by_user = {r["user_id"]: r for r in events.iter_rows(named=True)}
    assert by_user["u2"]["query"] == 'red\nshoes, size "42"'  # the line break inside quotes is kept
    assert by_user["u3"]["timestamp"].isoformat() == "2026-01-01T08:12:00+00:00"  # a space instead of a T
    assert by_user["u10"]["item_id"] == "i10, with comma"

    physical = DEFECTS.read_bytes().count(b"\n")
    covered = [1]  # the header (behind a BOM)
    for first, last in LOADED.values():
        covered += range(first, last + 1)
    covered += REJECTED
    assert sorted(covered) == list(range(1, physical + 1))  # each line exactly once


def test_on_error_fail_names_the_first_bad_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", SPEC, "--db", str(tmp_path / "f.duckdb")])
    assert result.exit_code == 1
    assert f"{DEFECTS}:6: events field 'user_id': user id contains a control character" in " ".join(
        result.stderr.split())
