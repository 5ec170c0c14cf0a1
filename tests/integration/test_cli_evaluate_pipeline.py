"""`aisle evaluate --models pipeline`: the serving pipeline through the same harness as every model, configured by
the `[pipeline]` table `aisle train` reads, with its candidate recall and paired per-user tests in the result."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from aisle.bundle import Bundle
from aisle.cli import app
from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.testing.toy import toy_sequences

runner = CliRunner()
DOCUMENTED = Path(__file__).parents[2] / "benchmarks" / "pipeline_fast.toml"
DEEP = Path(__file__).parents[2] / "benchmarks" / "pipeline_deep.toml"
HOPS = Path(__file__).parents[2] / "benchmarks" / "pipeline_hops.toml"
FULL = Path(__file__).parents[2] / "benchmarks" / "pipeline_full.toml"
STOPPED = Path(__file__).parents[2] / "benchmarks" / "pipeline_full_stopped.toml"


def _flat(output: str) -> str:
    """The CLI's message on one line, rich's error box and its line breaks (terminal width) taken out."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def _toy(tmp_path: Path) -> Path:
    path = tmp_path / "Toy.txt"
    path.write_text("\n".join(f"{u} {' '.join(s)}" for u, s in toy_sequences(120, 80, seed=3).items()) + "\n")
    return path


def _evaluate(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "res.json"
    result = runner.invoke(app, ["evaluate", f"s3rec:{_toy(tmp_path)}", "--k", "10", "--json", str(out), *args])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, pl.DataFrame]:
    root = tmp_path_factory.mktemp("pipeline-eval")
    users = root / "users.csv"
    report = _evaluate(root, "--models", "pipeline,markov,pop", "--per-user", str(users))
    return report, pl.read_csv(users, schema_overrides={"user_id": pl.String})


def test_default_pipeline_is_the_demo_fast_sources(default_run: tuple[dict, pl.DataFrame]) -> None:
    report, _ = default_run
    config = report["models"]["pipeline"]["params"]["config"]
    assert [s["key"] for s in config["sources"]] == [s["key"] for s in DEMO_SOURCES_FAST]
    assert report["models"]["pipeline"]["n_evaluated"] == report["models"]["markov"]["n_evaluated"]


def test_candidate_recall_per_source_and_merged(default_run: tuple[dict, pl.DataFrame]) -> None:
    report, _ = default_run
    entry = report["models"]["pipeline"]
    recall = entry["candidate_recall"]
    assert recall["depths"] == [50, 100, 200] and recall["stage"] == "test"
    assert set(recall["recall"]) == {"merged", *(s["key"] for s in DEMO_SOURCES_FAST)}
    for values in recall["recall"].values():
        shares = [values["@50"], values["@100"], values["@200"]]
        assert all(0.0 <= v <= 1.0 for v in shares) and shares == sorted(shares)
    # the pipeline ranks its merged candidates first, so its top 10 can only hold targets its top 50 holds
    assert recall["recall"]["merged"]["@50"] >= entry["HR@10"] > 0
    assert recall["mean_candidates"] > 10
    # which ranker serves (the combiner, or the single source that beat it on held-out queries), and why
    assert set(recall["selection"]) == {"combiner", *(s["key"] for s in DEMO_SOURCES_FAST)}
    # the combiner unless a single source beat it on those queries (by more than chance: combiner.choose_ranker)
    best = max(recall["selection"], key=lambda k: (recall["selection"][k], k == "combiner"))
    assert recall["ranker"] in ("combiner", best)
    assert recall["ranker"] == "combiner" or recall["selection"][best] > recall["selection"]["combiner"]
    assert "candidate_recall" not in report["models"]["markov"]


def test_per_user_rows_and_paired_tests(default_run: tuple[dict, pl.DataFrame]) -> None:
    report, rows = default_run
    mine = rows.filter(pl.col("model") == "pipeline")
    assert mine.height == report["models"]["pipeline"]["n_evaluated"]
    assert mine["NDCG@10"].mean() == pytest.approx(report["models"]["pipeline"]["NDCG@10"], abs=1e-6)
    paired = report["paired"]
    assert paired["model"] == "pipeline" and set(paired["against"]) == {"markov", "pop"}
    for other, entry in paired["against"].items():
        theirs = rows.filter(pl.col("model") == other)
        assert entry["users"] == theirs.height
        assert entry["NDCG@10"]["difference"] == pytest.approx(
            report["models"]["pipeline"]["NDCG@10"] - report["models"][other]["NDCG@10"], abs=1e-6)
        assert 0.0 <= entry["NDCG@10"]["p_value"] <= 1.0


def test_pipeline_table_sets_the_sources(tmp_path: Path) -> None:
    config = tmp_path / "two.toml"
    config.write_text('[pipeline]\nper_source = 20\nsources = [\n'
                      '  {key = "markov", model = "markov", kind = "i2i", window = 3},\n'
                      '  {key = "hot", model = "trending", kind = "trending"},\n]\n')
    report = _evaluate(tmp_path, "--models", "pipeline", "--config", str(config))
    entry = report["models"]["pipeline"]
    assert [s["key"] for s in entry["params"]["config"]["sources"]] == ["markov", "hot"]
    assert entry["params"]["config"]["per_source"] == 20
    assert set(entry["candidate_recall"]["recall"]) == {"merged", "markov", "hot"}
    assert "paired" not in report  # nothing to pair with


@pytest.mark.parametrize(("text", "message"), [
    ('[pipeline]\nsources = [{key = "x", model = "markov", kind = "nope"}]\n', "unknown source kind 'nope'"),
    ("[pipeline]\nper_sauce = 3\n", "unknown pipeline key 'per_sauce'"),
])
def test_a_bad_pipeline_table_is_refused_before_reading(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = runner.invoke(app, ["evaluate", f"s3rec:{tmp_path / 'absent.txt'}", "--models", "pipeline,pop",
                                 "--config", str(config)])
    assert result.exit_code == 2 and message in _flat(result.output), result.output


def test_a_pipeline_table_without_the_pipeline_model_is_named_as_ignored(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", f"s3rec:{_toy(tmp_path)}", "--models", "markov",
                                 "--config", str(DOCUMENTED)])
    assert result.exit_code == 0 and "ignoring [pipeline] (not used by evaluate --models markov)" in \
        _flat(result.output), result.output


def _served_config(tmp_path: Path, documented: Path) -> tuple[dict, dict]:
    """(the pipeline configuration `aisle evaluate --config` measured, the one `aisle train --config` served)."""
    report = _evaluate(tmp_path, "--models", "pipeline", "--config", str(documented), "--seed", "4")
    bundle_dir = tmp_path / "bundle"
    result = runner.invoke(app, ["train", f"s3rec:{_toy(tmp_path)}", "--out", str(bundle_dir), "--config",
                                 str(documented), "--seed", "4", "--no-search"])
    assert result.exit_code == 0, result.output
    served = Bundle.load(bundle_dir, search=False).pipeline
    assert served is not None
    return report["models"]["pipeline"]["params"]["config"] | {"seed": 4}, served.config.to_json()


def test_what_is_measured_is_what_is_served(tmp_path: Path) -> None:
    """The documented configuration of the benchmark rows: `aisle evaluate --config` measures the pipeline that
    `aisle train --config` builds from the same file (and the evaluate default is that pipeline too)."""
    measured, served = _served_config(tmp_path, DOCUMENTED)
    assert served == measured
    default = _evaluate(tmp_path, "--models", "pipeline")["models"]["pipeline"]["params"]["config"]
    assert default["sources"] == served["sources"]


def _shortened(tmp_path: Path, config: Path, long: str, short: str) -> Path:
    """A copy of `config` whose training-length setting `long` (found once) reads `short`: the test checks what is
    measured and served, not the model's quality, so it trains for seconds."""
    text = config.read_text()
    assert text.count(long) == 1
    quick = tmp_path / config.name
    quick.write_text(text.replace(long, short))
    return quick


def test_the_deep_pipeline_measured_is_the_one_served(tmp_path: Path) -> None:
    """The same for the configuration with the deep source (`benchmarks/pipeline_deep.toml`): SASRec fitted once,
    within its time budget, in both. Its 8 epochs become 1 here (the only change), to keep the test in seconds."""
    measured, served = _served_config(tmp_path, _shortened(tmp_path, DEEP, "epochs = 8,", "epochs = 1,"))
    assert served == measured
    deep = next(s for s in served["sources"] if s["kind"] == "sequential")
    assert deep["model"] == "sasrec" and deep["fit_once"] and deep["params"]["max_seconds"] > 0


def test_the_two_hop_pipeline_measured_is_the_one_served(tmp_path: Path) -> None:
    """The same for `benchmarks/pipeline_hops.toml`: deeper lists and a Markov source whose neighbours are two
    transitions away, in both."""
    measured, served = _served_config(tmp_path, HOPS)
    assert served == measured
    two = next(s for s in served["sources"] if s["key"] == "markov2")
    assert two["model"] == "markov" and two["params"] == {"hops": 2}
    assert served["neighbours"] == 100 and served["per_source"] == 100


def test_the_full_scoring_pipeline_measured_is_the_one_served(tmp_path: Path) -> None:
    """The same for `benchmarks/pipeline_full.toml`: the two-hop pipeline with SASRec, its user sources scoring
    every candidate (the "full" feature group) in both, SASRec refitted with the other sources (not `fit_once`:
    the refit is what lifted the Beauty row). SASRec's 20 epochs (a count, not a time budget: the rows must not
    depend on the machine's load) become 1 here."""
    assert "max_seconds" not in FULL.read_text().split("[pipeline]")[1]
    quick = _shortened(tmp_path, FULL, "params = {epochs = 20}", "params = {epochs = 1}")
    measured, served = _served_config(tmp_path, quick)
    assert served == measured
    assert served["features"] == ["tags", "full"]
    assert [s["key"] for s in served["sources"] if s["kind"] in ("user", "sequential")] == ["sasrec", "als"]
    assert not next(s for s in served["sources"] if s["key"] == "sasrec")["fit_once"]
    assert served["max_train_queries"] == 1_000_000
    assert served["lightgbm"] == {"num_leaves": 31, "min_data_in_leaf": 100}


def _pipeline_lines(path: Path) -> list[str]:
    """The `[pipeline]` table's lines (what configures the pipeline; the comments above it only explain)."""
    return path.read_text().split("[pipeline]", 1)[1].splitlines()


def test_movielens_pipeline_differs_only_in_its_deep_source_and_is_the_one_served(tmp_path: Path) -> None:
    """`benchmarks/pipeline_full_stopped.toml` is `pipeline_full.toml` with what ML-100K's validation targets chose:
    the two-tower model as the deep source in SASRec's place (its epochs chosen by early stopping on each user's
    held-out last item, then refitted like the other sources), and a combiner that learns from each user's last 5
    events with its default tree settings. The with/without-deep rows compare it against the same file without
    its deep line, so every other line must be `pipeline_full.toml`'s. Measured == served as for the others, with
    the 200-epoch cap cut to 2 to keep the test in seconds."""
    full, stopped = _pipeline_lines(FULL), _pipeline_lines(STOPPED)
    combiner = ("max_train_queries", "lightgbm")
    kept = [line for line in full if not line.startswith(combiner) and "learns from every user" not in line]
    assert not any(line.startswith(combiner) for line in stopped)
    assert [line for line in stopped if line.startswith("train_positions")] == ["train_positions = 5"]
    rest = [line for line in stopped if not line.startswith("train_positions")]
    changed = [(a, b) for a, b in zip(kept, rest, strict=True) if a != b]
    assert len(changed) == 1 and 'key = "sasrec"' in changed[0][0] and 'key = "twotower"' in changed[0][1]
    measured, served = _served_config(tmp_path, _shortened(tmp_path, STOPPED, "epochs = 200,", "epochs = 2,"))
    assert served == measured
    assert served["train_positions"] == 5
    deep = [s for s in served["sources"] if s["model"] in ("sasrec", "gru4rec", "twotower")]
    assert [(s["model"], s["kind"], s["fit_once"]) for s in deep] == [("twotower", "user", False)]
    assert deep[0]["params"] == {"max_len": 200, "epochs": 2, "holdout": True, "eval_every": 2, "patience": 10}
