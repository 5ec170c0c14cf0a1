"""The pipeline's second fit (each user's held-out newest event put back) refits an early-stopped deep source for
the epochs its first fit chose, on everything: it neither holds the newest event out again nor trains a
different length."""

from __future__ import annotations

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.evaluate.protocol import item_vocab
from aisle.models.base import TrainData
from aisle.models.sequential import SASRec
from aisle.pipeline import Pipeline, PipelineConfig, SourceSpec, hold_out_last

TINY = {"dim": 16, "layers": 1, "batch_size": 64, "lr": 3e-3, "warmup_steps": 0, "progress": False,
        "device": "cpu", "epochs": 6, "eval_every": 1, "patience": 2, "holdout": True}


def test_an_early_stopped_source_is_refitted_for_its_chosen_epochs_on_all_events() -> None:
    s = generate(SyntheticConfig(n_items=200, n_users=200, n_events=8_000, seed=3))
    full = TrainData.from_events(s.events, items=item_vocab(s.events, s.items), catalog=s.items)
    sources = (SourceSpec("sasrec", "sasrec", "sequential", TINY), SourceSpec("trending", "trending", "trending"))
    pipe = Pipeline(PipelineConfig(sources=sources, rounds=5, seed=4)).fit(full)

    first = SASRec(**TINY, seed=4).fit(hold_out_last(full)[0])  # what the pipeline's first fit chose
    assert first.result is not None and first.result.best_epoch >= 1
    served = pipe.source("sasrec").model
    assert served.seq.holdout is False
    assert served.train_cfg.stop_after == first.result.best_epoch
    assert served.result.epochs_run == first.result.best_epoch
