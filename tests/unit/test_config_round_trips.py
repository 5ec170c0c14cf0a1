"""Every configuration outside the pipeline survives a dump and a load unchanged, and its loader is strict."""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aisle.cli.train import load_config, parameter_names
from aisle.config import InferenceConfig, Pin, RulesConfig, Settings, load_settings
from aisle.data.synthetic import SyntheticConfig
from aisle.models.registry import MODELS
from aisle.models.seqtask import SeqConfig
from aisle.optimize.distill import DistillConfig
from aisle.search.engine import SearchConfig
from aisle.train.trainer import TrainConfig


def _settings() -> Settings:
    return Settings(bundle=Path("b7"), store=Path("s.duckdb"), state="redis://cache:6379/0", api_keys=("k1", "k2"),
                    port=9001, workers=3, rules=RulesConfig(exclude_seen="purchased", max_per_brand=2, diversity=0.3,
                                                            boost_brands={"Acme": 2.0}, pins=(Pin(item_id="i1",
                                                                                                  position=2),)),
                    inference=InferenceConfig(backend="torch", ann="hnsw", nprobe=16, cache_dir=Path("/tmp/opt")))


def test_settings_round_trip_through_json_and_through_the_environment() -> None:
    s = _settings()
    assert Settings.model_validate_json(s.model_dump_json()) == s  # what `aisle serve` hands its workers
    dumped = json.loads(s.model_dump_json())
    env = {f"AISLE_{k.upper()}": (v if isinstance(v, str) else ",".join(v) if k.endswith("_keys") else json.dumps(v))
           for k, v in dumped.items() if v is not None and k not in ("rules", "inference")}
    env |= {f"AISLE_{table.upper()}__{k.upper()}": v if isinstance(v, str) else json.dumps(v)
            for table in ("rules", "inference") for k, v in dumped[table].items() if v is not None}
    assert load_settings(None, env=env) == s


@pytest.mark.parametrize("config", [
    SyntheticConfig(n_items=300, n_users=50, n_events=999, seed=7, days=30, end=datetime(2025, 1, 2, tzinfo=UTC),
                    typo_rate=0.2),
    SeqConfig(dim=32, layers=1, loss="gbce", negatives=64, use_features=False, holdout=False),
    TrainConfig(epochs=3, lr=2e-3, schedule="cosine", checkpoint_dir="ck", max_seconds=12.5, progress=False),
    SearchConfig(k_lex=50, rerank_depth=30, min_should_match=0.75),
    DistillConfig(temperature=3.0, alpha=0.4),
], ids=lambda c: type(c).__name__)
def test_dataclass_configs_round_trip_through_json(config: Any) -> None:
    cls = type(config)
    dumped = json.loads(json.dumps(config.as_dict() if hasattr(config, "as_dict") else asdict(config)))
    loaded = cls.from_dict(dumped) if hasattr(cls, "from_dict") else cls(**dumped)
    assert loaded == config
    assert {f.name for f in fields(cls)} == set(dumped)


def test_synthetic_config_from_dict_is_strict() -> None:
    with pytest.raises(ValueError, match=r"n_item\b.*accepted: n_items"):
        SyntheticConfig.from_dict({"n_item": 10})


def _defaults(name: str) -> dict[str, Any]:
    cls = MODELS[name]
    if hasattr(cls, "parameter_names"):
        values = {**asdict(cls.default_seq), **asdict(cls.default_train), "seed": 3}
    else:
        values = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name != "self" and p.default is not inspect.Parameter.empty}
    assert set(values) == parameter_names(cls), name  # every parameter has a default: a file may set any of them
    return values


def test_model_parameter_files_round_trip_for_every_registry_model(tmp_path: Path) -> None:
    params = {name: _defaults(name) for name in MODELS}
    path = tmp_path / "params.json"
    path.write_text(json.dumps({**params, "pipeline": {"per_source": 50}}))
    loaded = load_config(path)
    assert loaded == json.loads(json.dumps({**params, "pipeline": {"per_source": 50}}))
    for name in ("itemknn", "markov", "fbt", "sasrec"):
        MODELS[name](**loaded[name])  # the checked names are the constructor's
