"""`aisle evaluate --config`: parameters from a file are fixed (not searched) and reported."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aisle.cli import app
from aisle.testing.toy import toy_sequences

runner = CliRunner()



def _flat(output: str) -> str:
    """The CLI's message on one line: rich's error box borders and line breaks (they depend on the terminal
    width) taken out."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())

def _toy(tmp_path: Path) -> Path:
    path = tmp_path / "Toy.txt"
    path.write_text("\n".join(f"{u} {' '.join(s)}" for u, s in toy_sequences(40, 20, seed=1).items()) + "\n")
    return path


def test_config_pins_parameters(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[markov]\nwindow = 2\n")
    out = tmp_path / "res.json"
    result = runner.invoke(app, ["evaluate", f"s3rec:{_toy(tmp_path)}", "--models", "markov", "--config", str(cfg),
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    entry = json.loads(out.read_text())["models"]["markov"]
    assert entry["params"]["window"] == 2
    assert all(t["params"]["window"] == 2 for t in entry["trials"])


def test_the_file_aisle_train_reads_is_accepted_and_unused_tables_are_named(tmp_path: Path) -> None:
    """A serving bundle's config ([pipeline], [search] with adapt, a model table) evaluates as it is: the tables
    evaluate does not use are left out with one line naming them, the ones it uses still apply."""
    cfg = tmp_path / "train.toml"
    cfg.write_text('[pipeline]\nsources = [{key = "trending", model = "trending", kind = "trending"}]\n'
                   "[search]\nadapt = true\nmin_pairs = 50\n[sasrec]\ndim = 8\n[markov]\nwindow = 2\n")
    out = tmp_path / "res.json"
    result = runner.invoke(app, ["evaluate", f"s3rec:{_toy(tmp_path)}", "--models", "pipeline,markov", "--config",
                                 str(cfg), "--json", str(out)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {cfg}: ignoring [search], [sasrec] (not used by evaluate --models pipeline,markov)"], \
        result.output
    models = json.loads(out.read_text())["models"]
    assert models["markov"]["params"]["window"] == 2
    assert set(models["pipeline"]["candidate_recall"]["recall"]) == {"merged", "trending"}  # the file's sources
    cfg.write_text("[search]\nadapt = true\nepohcs = 2\n")  # a typo inside a table is still refused by name
    result = runner.invoke(app, ["evaluate", f"s3rec:{_toy(tmp_path)}", "--models", "pop", "--config", str(cfg)])
    message = _flat(result.output)
    assert result.exit_code == 2 and "[search] has unknown parameter epohcs" in message, message


def test_an_unknown_model_table_or_parameter_is_an_error_naming_it(tmp_path: Path) -> None:
    toy = f"s3rec:{_toy(tmp_path)}"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[markov]\nwindow = 2\n[markvo]\nwindow = 3\n")
    for args in (["evaluate", toy, "--models", "markov"], ["train", toy, "--model", "markov", "--out",
                                                             str(tmp_path / "b")]):
        result = runner.invoke(app, [*args, "--config", str(cfg)])
        message = _flat(result.output)
        assert result.exit_code == 2 and "unknown model table [markvo]" in message, message
        assert "[markov]" in message and "[pipeline]" in message and "Traceback" not in message
    cfg.write_text("[markov]\nwindwo = 2\n[sasrec]\ndropout = 0.2\n")
    result = runner.invoke(app, ["evaluate", toy, "--models", "markov,sasrec", "--config", str(cfg)])
    message = _flat(result.output)
    assert result.exit_code == 2 and "[markov] has unknown parameter windwo" in message, message
    assert "accepted: decay, hops, smoothing, window" in message
    cfg.write_text("[sasrec]\ndrop_out = 0.2\n")
    result = runner.invoke(app, ["train", toy, "--model", "sasrec", "--out", str(tmp_path / "b"), "--config",
                                 str(cfg)])
    message = _flat(result.output)
    assert result.exit_code == 2 and "[sasrec] has unknown parameter drop_out" in message and "dropout" in message
    assert not (tmp_path / "b").exists()
