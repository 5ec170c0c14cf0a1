"""Deep sequence models through the public interface: every loss learns planted order, options behave."""

from __future__ import annotations

import numpy as np
import pytest

from aisle.models.base import QueryBatch, TrainData, recommend
from aisle.models.seqtask import SeqConfig
from aisle.models.sequential import GRU4Rec, SASRec
from aisle.models.twotower import TwoTower
from tests.integration.ddp.worker import planted_log

SMALL = {"dim": 16, "layers": 1, "batch_size": 64, "lr": 5e-3, "warmup_steps": 0, "progress": False,
         "use_features": False, "device": "cpu", "dropout": 0.1, "holdout": True, "schedule": "constant"}


@pytest.fixture(scope="module")
def data() -> TrainData:
    return TrainData.from_events(planted_log(n_users=200, n_items=30))


def _continues_chain(model: SASRec, data: TrainData) -> bool:
    chain = [data.items.index[str(i)] for i in (3, 4, 5)]
    top, _ = recommend(model.score(QueryBatch.of_histories([chain])), 3, exclude=[np.asarray(chain)])
    return data.items.index["6"] in top[0]


@pytest.mark.parametrize("loss", ["ce", "sampled", "gbce"])
def test_every_loss_learns_the_planted_chains(data: TrainData, loss: str) -> None:
    model = SASRec(epochs=8, loss=loss, negatives=8, **SMALL).fit(data)
    assert model.result is not None and model.result.best_metric > 0.3  # chance ~0.07
    assert loss != "ce" or _continues_chain(model, data)


@pytest.mark.parametrize("loss", [None, "inbatch"])
def test_two_tower_learns_with_its_default_ce_and_in_batch_negatives(data: TrainData, loss: str | None) -> None:
    options = {"loss": loss} if loss else {}
    model = TwoTower(epochs=10, **{**SMALL, "batch_size": 32}, **options).fit(data)
    assert model.seq.loss == (loss or "ce")
    assert model.result is not None and model.result.best_metric > 0.3
    assert _continues_chain(model, data)


def test_without_holdout_trains_every_epoch_on_everything(data: TrainData) -> None:
    model = GRU4Rec(epochs=3, patience=1, **{**SMALL, "holdout": False}).fit(data)
    res = model.result
    assert res is not None and res.epochs_run == 3 and res.best_epoch == 3 and not res.stopped_early
    assert all("NDCG@10" not in row for row in res.history)


def test_seed_decides_the_fit(data: TrainData) -> None:
    batch = QueryBatch.of_histories([[0, 1, 2]])
    a, b, c = (SASRec(epochs=1, seed=s, **SMALL).fit(data).score(batch) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert SASRec(seed=3).train_cfg.seed == 3


def test_bad_parameters_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="unknown parameter"):
        SASRec(dimension=64)
    with pytest.raises(ValueError, match="unknown loss"):
        SeqConfig(loss="hinge")
    with pytest.raises(ValueError, match="dropout"):
        SASRec(dropout=1.5)


def test_unknown_and_out_of_range_history_items_are_ignored(data: TrainData) -> None:
    model = SASRec(epochs=1, **SMALL).fit(data)
    clean = model.score(QueryBatch.of_histories([[2, 3]]))
    noisy = model.score(QueryBatch.of_histories([[-1, 2, data.n_items + 5, 3]]))
    np.testing.assert_allclose(clean, noisy, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("heads", [1, 2])
def test_sasrec_net_is_exact_on_windows_shorter_than_max_len(heads: int) -> None:
    """Fewer pads than trained with change nothing: the last state equals the full-width one."""
    import torch

    from aisle.models.seqnets import SASRecNet
    from aisle.models.seqtask import left_pad

    torch.manual_seed(0)
    net = SASRecNet(300, dim=32, layers=2, heads=heads, max_len=50, dropout=0.3).eval()
    rng = np.random.default_rng(0)
    hists = [rng.integers(1, 301, int(rng.integers(1, 60))) for _ in range(40)]
    with torch.no_grad():
        full = net(torch.from_numpy(left_pad(hists, 50)))[:, -1]
        for width in (8, 16, 49):
            rows = [i for i, h in enumerate(hists) if len(h) < width]
            short = net(torch.from_numpy(left_pad([hists[i] for i in rows], width)))[:, -1]
            assert rows and float((short - full[rows]).abs().max()) < 1e-5
        net._pad_bias = lambda seq: torch.zeros(len(seq) * heads, 1, seq.shape[1])  # type: ignore[method-assign]
        i = next(i for i, h in enumerate(hists) if len(h) < 20)
        short = net(torch.from_numpy(left_pad([hists[i]], len(hists[i]) + 1)))[:, -1]
        assert float((short - full[i]).abs().max()) > 1e-3  # without the bias the windows differ
