"""The shared training loop: early stopping, best-epoch weights, checkpoints and resume, time budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aisle.models.base import QueryBatch, TrainData
from aisle.models.sequential import GRU4Rec, SASRec
from aisle.train.trainer import TrainConfig, resolve_amp
from tests.integration.ddp.worker import planted_log

SMALL = {"dim": 16, "layers": 1, "batch_size": 64, "lr": 3e-3, "warmup_steps": 0, "progress": False,
         "use_features": False, "device": "cpu", "holdout": True, "schedule": "constant"}


@pytest.fixture(scope="module")
def data() -> TrainData:
    return TrainData.from_events(planted_log(n_users=200, n_items=30))


def test_learns_planted_order_and_keeps_best_epoch(data: TrainData) -> None:
    model = SASRec(epochs=6, dropout=0.1, **SMALL).fit(data)
    res = model.result
    assert res is not None and res.epochs_run == 6
    assert res.best_metric == max(h["NDCG@10"] for h in res.history)
    assert res.best_metric > 0.3  # chance is about 10/30 * 1/log2(...) -> far lower at the top rank


def test_early_stopping_stops_after_patience(data: TrainData) -> None:
    model = SASRec(epochs=50, dropout=0.1, patience=1, **{**SMALL, "lr": 1e-9}).fit(data)
    assert model.result is not None and model.result.stopped_early and model.result.epochs_run < 50


def test_time_budget_stops_training(data: TrainData) -> None:
    model = SASRec(epochs=1000, max_seconds=0.01, **SMALL).fit(data)
    assert model.result is not None and model.result.epochs_run == 1 and not model.result.stopped_early


def test_time_budget_shortens_the_cosine_schedule_to_end_annealed(data: TrainData) -> None:
    """A nightly refit cut short by its budget: the cosine decay is compressed into the epochs that fit, so the
    last epoch ends near a zero learning rate, not at the rate of epoch 1 of a 1000-epoch schedule."""
    model = SASRec(epochs=1000, max_seconds=0.01, **{**SMALL, "schedule": "cosine"}).fit(data)
    assert model.result is not None and model.result.epochs_run == 1
    assert model.result.history[-1]["lr"] < 0.05 * SMALL["lr"]


def test_cpu_budget_stops_training_and_ends_annealed(data: TrainData) -> None:
    """`max_cpu_seconds` counts this process's CPU time, not the wall clock: the same cut and the same annealed
    end as the wall-clock budget, whatever the neighbours take from the machine."""
    model = SASRec(epochs=1000, max_cpu_seconds=0.01, **{**SMALL, "schedule": "cosine"}).fit(data)
    assert model.result is not None and model.result.epochs_run == 1 and not model.result.stopped_early
    assert model.result.history[-1]["lr"] < 0.05 * SMALL["lr"]


def test_cpu_budget_ignores_time_spent_waiting(data: TrainData, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wall clock that races ahead (a loaded machine: the process waits for a core) cuts a `max_seconds` run
    after one epoch and leaves a `max_cpu_seconds` run of the same size alone."""
    import time as real_time

    from aisle.train import trainer

    class SlowWall:
        """The trainer's clock module with a wall clock that advances 1,000 s at every reading."""

        def __init__(self) -> None:
            self.now = 0.0

        def perf_counter(self) -> float:
            self.now += 1000.0
            return self.now

        def process_time(self) -> float:
            return real_time.process_time()

    monkeypatch.setattr(trainer, "time", SlowWall())
    wall = SASRec(epochs=3, max_seconds=100.0, **SMALL).fit(data)
    monkeypatch.setattr(trainer, "time", SlowWall())
    cpu = SASRec(epochs=3, max_cpu_seconds=100.0, **SMALL).fit(data)
    assert wall.result is not None and wall.result.epochs_run == 1
    assert cpu.result is not None and cpu.result.epochs_run == 3


def test_stop_after_follows_the_longer_schedule_and_stops_there(data: TrainData) -> None:
    """`stop_after` cuts a run at that epoch without shortening its cosine schedule: its epochs are the first
    epochs of the full-length run, learning rates and losses alike (what a refit relies on to end where the
    early-stopped fit peaked), and 0 is refused."""
    cfg = {**SMALL, "schedule": "cosine", "holdout": False}
    whole = SASRec(epochs=5, **cfg).fit(data).result
    cut = SASRec(epochs=5, stop_after=2, **cfg).fit(data).result
    assert whole is not None and cut is not None and cut.epochs_run == 2 and whole.epochs_run == 5
    for mine, theirs in zip(cut.history, whole.history[:2], strict=True):
        assert mine["lr"] == pytest.approx(theirs["lr"]) and mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    assert cut.history[-1]["lr"] > 0.5 * SMALL["lr"]  # not annealed: the 5-epoch schedule's third of the way
    with pytest.raises(ValueError, match="stop_after"):
        SASRec(epochs=5, stop_after=0, **cfg)


def test_refit_overrides_carry_the_early_stopped_epoch_count(data: TrainData) -> None:
    """After a hold-out fit the refit trains on everything for the epochs that fit chose; a fit that held
    nothing out asks for no change."""
    held = SASRec(epochs=4, **SMALL).fit(data)
    assert held.result is not None and held.result.best_epoch >= 1
    assert held.refit_overrides() == {"holdout": False, "stop_after": held.result.best_epoch}
    again = SASRec(epochs=4, **{**SMALL, **held.refit_overrides()}).fit(data)
    assert again.result is not None and again.result.epochs_run == held.result.best_epoch
    assert SASRec(epochs=2, **{**SMALL, "holdout": False}).fit(data).refit_overrides() == {}


def test_patience_waits_for_the_warm_up_to_end(data: TrainData) -> None:
    """Epochs that end while the learning rate is still warming up never count against patience: a learning
    rate too small to move the metric stops a 1-epoch patience at epoch 2 without a warm-up (the test above), and
    not at all when every epoch is inside the warm-up."""
    model = SASRec(epochs=6, patience=1, **{**SMALL, "lr": 1e-9, "warmup_steps": 10**6}).fit(data)
    assert model.result is not None and not model.result.stopped_early and model.result.epochs_run == 6


def test_checkpoint_resume_continues_where_it_stopped(data: TrainData, tmp_path) -> None:
    ckpt = str(tmp_path / "ckpt")
    first = SASRec(epochs=2, checkpoint_dir=ckpt, **SMALL).fit(data)
    resumed = SASRec(epochs=4, checkpoint_dir=ckpt, resume=True, **SMALL).fit(data)
    assert first.result is not None and resumed.result is not None
    assert [h["epoch"] for h in resumed.result.history] == [1, 2, 3, 4]
    assert resumed.result.history[:2] == first.result.history


def test_gru4rec_and_new_session_scoring(data: TrainData, tmp_path) -> None:
    model = GRU4Rec(epochs=10, dropout=0.1, **SMALL).fit(data)
    chain = [data.items.index[str(i)] for i in (3, 4, 5)]
    scores = model.score(QueryBatch.of_histories([chain]))
    assert scores.shape == (1, data.n_items) and scores.dtype == np.float32
    assert data.items.index["6"] in np.argsort(-scores[0])[:3]  # the chain continues
    model.save(tmp_path / "m")
    again = GRU4Rec.load(tmp_path / "m")
    assert np.allclose(again.score(QueryBatch.of_histories([chain])), scores, atol=1e-6)
    assert not list((tmp_path / "m").glob("*.pkl"))


def test_amp_resolution() -> None:
    assert resolve_amp(torch.device("cpu"), "auto") == "off"
    assert resolve_amp(torch.device("cpu"), "bf16") == "bf16"
    assert TrainConfig().replace(lr=0.5).lr == 0.5
