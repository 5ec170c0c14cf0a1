"""Pipeline configuration is strict and round-trips: an unknown kind, model or key is an error that names it and
lists what is accepted (an unknown kind used to become trending without a word)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisle.cli import app
from aisle.models.registry import MODELS
from aisle.pipeline import CONTENT_SOURCE, DEFAULT_SOURCES, PipelineConfig, PipelineConfigError, SourceSpec
from aisle.pipeline.sources import SOURCE_KINDS


def test_an_unknown_kind_is_an_error_that_lists_the_kinds() -> None:
    with pytest.raises(PipelineConfigError) as err:
        PipelineConfig.from_json({"sources": [{"key": "x", "model": "itemknn", "kind": "item2item"}]})
    assert "'item2item'" in str(err.value)
    assert all(kind in str(err.value) for kind in SOURCE_KINDS)


def test_an_unknown_model_or_key_is_an_error_that_lists_what_is_accepted() -> None:
    with pytest.raises(PipelineConfigError, match=r"unknown model 'itemkn'.*itemknn"):
        SourceSpec("x", "itemkn", "i2i")
    with pytest.raises(PipelineConfigError, match=r"unknown source key 'decy'.*decay"):
        SourceSpec.from_json({"key": "x", "model": "itemknn", "kind": "i2i", "decy": 0.5})
    with pytest.raises(PipelineConfigError, match=r"unknown pipeline key 'per_sorce'.*per_source"):
        PipelineConfig.from_json({"per_sorce": 10})
    with pytest.raises(PipelineConfigError, match=r"kind 'sequential' does not take model 'als'.*sasrec"):
        SourceSpec("x", "als", "sequential")
    with pytest.raises(PipelineConfigError, match="repeated: als"):
        PipelineConfig(sources=(SourceSpec("als", "als", "user"), SourceSpec("als", "als", "user")))
    assert set(MODELS) >= {s.model for s in DEFAULT_SOURCES}


@pytest.mark.parametrize("config", [PipelineConfig(), PipelineConfig(sources=(*DEFAULT_SOURCES, CONTENT_SOURCE),
                                                                     per_source=30, window=7, seed=3)])
def test_every_config_round_trips_through_json(config: PipelineConfig) -> None:
    again = PipelineConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config


def test_aisle_train_refuses_a_config_with_an_unknown_kind(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text('[pipeline]\nsources = [{key = "x", model = "itemknn", kind = "neighbours"}]\n')
    run = CliRunner().invoke(app, ["train", "aisle:/nonexistent", "--out", str(tmp_path / "b"), "--config",
                                   str(config)])
    assert run.exit_code == 2, run.output
    assert "unknown source kind 'neighbours'" in run.output and "bought_together" in run.output
    assert not (tmp_path / "b").exists()
