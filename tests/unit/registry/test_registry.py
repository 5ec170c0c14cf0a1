"""The bundle registry: versions appear whole, `current` moves atomically, rollback walks the promotions back,
pruning never drops what is served or what a rollback needs, and the CLI shows each decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisle.cli import app
from aisle.registry import Decision, Registry, RegistryError, is_registry, resolve_bundle


def _bundle(folder: Path, tag: str) -> Path:
    """A folder shaped like a complete bundle (what the registry checks: a manifest)."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"created_at": tag}))
    (folder / "payload.txt").write_text(tag)
    return folder


def _ok(kind: str = "refit", score: float = 0.05) -> Decision:
    return Decision(kind, True, "better", candidate={"ndcg@10": score}, serving={"ndcg@10": score - 0.01})


def test_publish_promote_and_rollback_move_current(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    assert reg.current() is None and not is_registry(tmp_path / "reg")
    v1 = reg.publish(_bundle(tmp_path / "a", "a"), _ok())
    v2 = reg.publish(_bundle(tmp_path / "b", "b"), _ok())
    assert is_registry(reg.root) and reg.current() == v2
    assert (resolve_bundle(reg.root) / "payload.txt").read_text() == "b"
    refused = reg.publish(_bundle(tmp_path / "c", "c"), Decision("refit", False, "NDCG@10 fell by 0.02",
                                                                   candidate={"ndcg@10": 0.01},
                                                                   serving={"ndcg@10": 0.03}))
    assert reg.current() == v2  # a refused candidate is kept for inspection, never served
    assert reg.decision(refused) is not None and reg.decision(refused).reason == "NDCG@10 fell by 0.02"
    assert reg.rollback() == v1 and reg.current() == v1
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    reg.promote(refused, reason="a person overrides the gate")
    assert reg.current() == refused and reg.chain() == [v1, refused]
    assert [r["action"] for r in reg.history()].count("rollback") == 1


def test_unknown_or_partial_versions_are_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.publish(_bundle(tmp_path / "a", "a"), _ok())
    with pytest.raises(RegistryError, match="no complete bundle version"):
        reg.promote("nope")
    partial = reg.incoming("half")
    partial.mkdir(parents=True)  # a writer killed before the manifest
    assert [v.version for v in reg.list()] != [] and "half" not in {v.version for v in reg.list()}
    with pytest.raises(RegistryError):
        reg.promote(".incoming-half")
    assert reg.clean_incoming() == 1 and not partial.exists()
    empty = tmp_path / "notabundle"
    empty.mkdir()
    with pytest.raises(RegistryError, match="not a complete bundle"):
        reg.publish(empty, _ok())


def test_pruning_keeps_current_and_rollback_target(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", keep=2)
    first = reg.publish(_bundle(tmp_path / "b0", "0"), _ok())
    second = reg.publish(_bundle(tmp_path / "b1", "1"), _ok())
    for i in range(2, 6):
        reg.publish(_bundle(tmp_path / f"b{i}", str(i)), Decision("refit", False, "worse"))
    names = [v.version for v in reg.list()]
    assert first in names and second in names  # rollback target and current survive refused newer ones
    assert len(names) <= 4


def test_cli_lists_decisions_and_rolls_back(tmp_path: Path) -> None:
    reg_dir = tmp_path / "reg"
    runner = CliRunner()
    for tag in ("a", "b"):
        r = runner.invoke(app, ["bundles", "publish", str(_bundle(tmp_path / tag, tag)), "--registry", str(reg_dir)])
        # a folder with only a manifest is not a serving bundle: the CLI says so and publishes nothing
        assert r.exit_code == 2 and "error" in r.output.lower()
    reg = Registry(reg_dir)
    v1 = reg.publish(_bundle(tmp_path / "c", "c"), _ok(score=0.0412))
    reg.publish(_bundle(tmp_path / "d", "d"), Decision("refit", False, "NDCG@10 0.0300 < 0.0412 - 0.002",
                                                       candidate={"ndcg@10": 0.03}, serving={"ndcg@10": 0.0412}))
    r = runner.invoke(app, ["bundles", "list", "--registry", str(reg_dir)])
    assert r.exit_code == 0, r.output
    assert "0.0412" in r.output and "0.0300" in r.output
    r = runner.invoke(app, ["bundles", "list", "--registry", str(reg_dir), "--json"])
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [(row["current"], row["decision"]["promoted"]) for row in rows] == [(True, True), (False, False)]
    assert rows[1]["decision"]["reason"] == "NDCG@10 0.0300 < 0.0412 - 0.002"
    assert rows[1]["decision"]["candidate"] == {"ndcg@10": 0.03} and rows[1]["decision"]["serving"] == {
        "ndcg@10": 0.0412}
    r = runner.invoke(app, ["bundles", "rollback", "--registry", str(reg_dir)])
    assert r.exit_code == 2 and "nothing to roll back" in r.output
    r = runner.invoke(app, ["bundles", "promote", "nope", "--registry", str(reg_dir)])
    assert r.exit_code == 2 and reg.current() == v1


def test_a_promotion_whose_record_was_lost_in_a_crash_is_still_in_the_chain(tmp_path: Path) -> None:
    """A writer killed after replacing `current` and before logging the promotion (seen with `aisle worker`
    killed by -9): the next promotion names it as `previous`, so a rollback still returns to it."""
    reg = Registry(tmp_path / "reg")
    v1 = reg.publish(_bundle(tmp_path / "a", "a"), _ok())
    v2 = reg.publish(_bundle(tmp_path / "b", "b"), _ok())
    history = reg.root / "history.jsonl"
    lines = history.read_text().splitlines()
    assert json.loads(lines[-1])["action"] == "promote"
    history.write_text("\n".join(lines[:-1]) + "\n")  # the crash: v2 is current, its promotion never logged
    assert reg.current() == v2
    v3 = reg.publish(_bundle(tmp_path / "c", "c"), _ok())
    assert reg.chain() == [v1, v2, v3]
    assert reg.rollback() == v2
