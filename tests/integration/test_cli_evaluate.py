"""`aisle evaluate` end to end, through the same entry point a user types."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisle.cli import app
from aisle.testing.toy import ToyPopularity, toy_sequences

runner = CliRunner()


@pytest.fixture
def toy_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The registry with the toy model added (a stand-in registry module if the real one cannot be imported)."""
    try:
        from aisle.models.registry import MODELS
    except ImportError:
        module = types.ModuleType("aisle.models.registry")
        module.MODELS = {}  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "aisle.models.registry", module)
        MODELS = module.MODELS  # type: ignore[attr-defined]  # noqa: N806
    monkeypatch.setitem(MODELS, "toy-pop", ToyPopularity)
    return MODELS


@pytest.fixture
def toy_file(tmp_path: Path) -> Path:
    path = tmp_path / "Toy.txt"
    lines = [f"{u} {' '.join(seq)}" for u, seq in toy_sequences(60, 30, seed=3).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_writes_json_and_report(toy_registry: dict, toy_file: Path, tmp_path: Path) -> None:
    out, rep = tmp_path / "res.json", tmp_path / "rep" / "report.md"
    result = runner.invoke(app, ["evaluate", f"s3rec:{toy_file}", "--models", "toy-pop", "--k", "5,10",
                                 "--json", str(out), "--report", str(rep)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert (data["dataset"], data["protocol"], data["n_users"], data["n_items"]) == ("Toy", "loo", 60, 30)
    entry = data["models"]["toy-pop"]
    assert entry["params"] == {"sign": 1.0} and 0 < entry["HR@10"] <= 1 and entry["fit_seconds"] >= 0
    assert {"HR@5", "NDCG@5", "NDCG@10", "MRR", "AUC", "eval_seconds"} <= set(entry)
    assert rep.exists() and rep.with_suffix(".png").exists()
    assert "toy-pop" in result.stdout and "NDCG@10" in result.stdout


def test_json_to_stdout_and_sampled_labels(toy_registry: dict, toy_file: Path) -> None:
    result = runner.invoke(app, ["evaluate", f"s3rec:{toy_file}", "--models", "toy-pop", "--k", "10",
                                 "--sampled", "5", "--max-trials", "1", "--json", "-"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sampled"] == 5 and "HR@10 (sampled-5)" in data["models"]["toy-pop"]
    assert "not comparable" in result.stderr


def test_unknown_model_lists_the_known_ones(toy_registry: dict, toy_file: Path) -> None:
    result = runner.invoke(app, ["evaluate", f"s3rec:{toy_file}", "--models", "toy-pop,nope"])
    assert result.exit_code == 2
    text = " ".join(result.stderr.split())
    assert "unknown model 'nope'" in text and "toy-pop" in text and "Traceback" not in result.output


def test_bad_source_and_options_are_clean_errors(toy_registry: dict, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["evaluate", f"s3rec:{tmp_path / 'none.txt'}", "--models", "toy-pop"])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    bad_k = runner.invoke(app, ["evaluate", f"s3rec:{tmp_path / 'none.txt'}", "--k", "ten"])
    assert bad_k.exit_code == 2 and "Traceback" not in bad_k.output


def test_targets_already_in_the_history_are_said_and_keep_seen_ranks_them(toy_registry: dict,
                                                                          tmp_path: Path) -> None:
    """Half the shoppers' last item is one they had before: excluded by default, each such target is a miss for
    every model, and the table and the Markdown report say how many and why; `--keep-seen` ranks them."""
    path = tmp_path / "Repeat.txt"
    seqs = toy_sequences(40, 20, seed=5)
    lines = [f"{u} {' '.join([*seq, seq[0]] if n % 2 else seq)}" for n, (u, seq) in enumerate(seqs.items())]
    path.write_text("\n".join(lines) + "\n")
    repeats = len(seqs) // 2  # toy sequences never repeat an item, so each odd shopper's target is a repeat
    runs = {}
    for flag in ([], ["--keep-seen"]):
        out, md = tmp_path / f"res{len(flag)}.json", tmp_path / f"rep{len(flag)}" / "report.md"
        result = runner.invoke(app, ["evaluate", f"s3rec:{path}", "--models", "toy-pop", "--k", "10",
                                     "--max-trials", "1", "--json", str(out), "--report", str(md), *flag],
                               terminal_width=200)
        assert result.exit_code == 0, result.output
        runs[len(flag)] = (json.loads(out.read_text()), " ".join(result.stdout.split()) + md.read_text())
    (excluded, text), (kept, kept_text) = runs[0], runs[1]
    entry = excluded["models"]["toy-pop"]
    assert excluded["exclude_seen"] and entry["unreachable_targets"] == repeats > 0
    assert entry["n_targets"] == 40
    assert "unranked targets" in text and "already in the shopper's history" in text and "--keep-seen" in text
    assert f"unranked targets (up to {repeats} of 40)" in (tmp_path / "rep0" / "report.md").read_text()
    assert not kept["exclude_seen"] and kept["models"]["toy-pop"]["unreachable_targets"] == 0
    assert "unranked targets" not in kept_text
