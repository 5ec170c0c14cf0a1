"""Serving paths of the deep models: the cached item table, the lazy registry, strict-JSON bundles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aisle.cli import app
from aisle.data.readers import read_dataspec
from aisle.models.base import QueryBatch, TrainData
from aisle.models.sequential import SASRec
from aisle.models.twotower import TwoTower
from aisle.testing.toy import toy_sequences

SMALL = {"dim": 16, "layers": 1, "batch_size": 32, "lr": 5e-3, "warmup_steps": 0, "progress": False,
         "device": "cpu", "dropout": 0.1, "schedule": "constant"}


def _toy_with_attributes(tmp_path: Path) -> Path:
    seqs = toy_sequences(60, 25, seed=3)
    path = tmp_path / "Toy.txt"
    path.write_text("\n".join(f"{u} {' '.join(s)}" for u, s in seqs.items()) + "\n")
    items = sorted({i for s in seqs.values() for i in s})
    attrs = {i: [1 + k % 4, 10 + k % 3] for k, i in enumerate(items)}
    (tmp_path / "Toy_item2attributes.json").write_text(json.dumps(attrs))
    return path


@pytest.fixture(scope="module")
def featured(tmp_path_factory: pytest.TempPathFactory) -> TrainData:
    data = read_dataspec(f"s3rec:{_toy_with_attributes(tmp_path_factory.mktemp('toy'))}")
    return TrainData.from_events(data.events, catalog=data.items)


@pytest.mark.parametrize("cls", [SASRec, TwoTower])
def test_cached_item_table_leaves_scores_unchanged_and_follows_weight_changes(cls: type, featured: TrainData,
                                                                              tmp_path: Path) -> None:
    model = cls(epochs=1, **SMALL).fit(featured)
    assert model.features is not None  # the side-feature path, where the table is computed
    batch = QueryBatch.of_histories([[0, 1, 2], [3], [4, 5]])
    with torch.no_grad():
        fresh = model.net.compute_item_table().clone()
    first = model.score(batch)
    with torch.no_grad():
        assert model.net.item_table() is model.net.item_table()  # eval mode, no autograd: computed once
        torch.testing.assert_close(model.net.item_table(), fresh)
    np.testing.assert_array_equal(model.score(batch), first)

    with torch.no_grad():  # an in-place weight change (what an optimiser step or load_state_dict does)
        model.net.items.ids.weight[1:] += 0.5
    moved = model.score(batch)
    assert not np.allclose(moved, first)
    with torch.no_grad():
        torch.testing.assert_close(model.net.item_table(), model.net.compute_item_table())
    model.net.train()
    with torch.no_grad():
        assert model.net.item_table() is not model.net.item_table()  # training mode never caches
    model.net.eval()

    model.save(tmp_path / "m")
    again = cls.load(tmp_path / "m")
    np.testing.assert_allclose(again.score(batch), moved, rtol=1e-5, atol=1e-5)


def test_registry_import_loads_no_torch() -> None:
    code = ("import sys; from aisle.models.registry import MODELS; names = sorted(MODELS); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert MODELS['sasrec'].name == 'sasrec' and 'torch' in sys.modules; print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 13


def _strict(text: str) -> dict:
    def refuse(constant: str) -> float:
        raise ValueError(f"non-JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_train_without_holdout_writes_strict_json_and_shows_no_metric(tmp_path: Path) -> None:
    spec = f"s3rec:{_toy_with_attributes(tmp_path)}"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[sasrec]\ndim = 8\nlayers = 1\nepochs = 1\nbatch_size = 32\nprogress = false\n")
    result = CliRunner().invoke(app, ["train", spec, "--model", "sasrec", "--config", str(cfg),
                                      "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "inf" not in result.output.lower()
    manifest = _strict((tmp_path / "b" / "manifest.json").read_text())
    entry = manifest["metrics"]["sasrec"]
    assert "valid_NDCG@10" not in entry and entry["epochs_run"] == 1

    cfg.write_text(cfg.read_text() + "holdout = true\n")
    result = CliRunner().invoke(app, ["train", spec, "--model", "sasrec", "--config", str(cfg),
                                      "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    entry = _strict((tmp_path / "c" / "manifest.json").read_text())["metrics"]["sasrec"]
    assert 0.0 <= entry["valid_NDCG@10"] <= 1.0
