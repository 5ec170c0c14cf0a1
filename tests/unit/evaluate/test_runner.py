"""The experiment runner: choice on validation only, refit without test targets, bounded trials, seeds, output shape."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import pytest

from aisle.data.splits import leave_one_out
from aisle.evaluate.runner import ModelError, candidate_params, run_experiment
from aisle.models.base import QueryBatch, TrainData
from aisle.testing.toy import ToyPopularity, sequences_frame, toy_events, toy_sequences


def _keys(df: pl.DataFrame) -> set[tuple]:
    return set(df.select("user_id", "item_id", "timestamp").iter_rows())


def test_chooses_on_validation_and_reports_the_json_shape() -> None:
    exp = run_experiment(toy_events(80, 30, seed=0), [ToyPopularity], ks=(5, 10), name="toy")
    out = exp.to_dict()
    assert {"dataset", "protocol", "n_users", "n_items", "models"} <= set(out)
    assert (out["dataset"], out["protocol"], out["n_users"], out["n_items"]) == ("toy", "loo", 80, 30)
    entry = out["models"]["toy-pop"]
    assert entry["params"] == {"sign": 1.0}  # ranking the least popular first loses on validation
    assert [t["params"] for t in entry["trials"]] == [{"sign": 1.0}, {"sign": -1.0}]
    assert entry["trials"][0]["valid"]["NDCG@5"] > entry["trials"][1]["valid"]["NDCG@5"]
    for key in ("HR@5", "NDCG@5", "HR@10", "NDCG@10", "MRR", "AUC", "fit_seconds", "eval_seconds"):
        assert isinstance(entry[key], float), key
    assert entry["n_evaluated"] == 80 and "sampled" not in out


def test_the_choice_is_made_on_validation_targets_never_on_test_targets() -> None:
    # every user's validation target comes from items v*, the test target from items t*. A model that
    # favours the test items would win on test; chosen on validation, the runner must take "valid".
    rng = np.random.default_rng(0)
    seqs = {u: [*s[:4], f"v{rng.integers(3)}", f"t{rng.integers(3)}"] for u, s in toy_sequences(40, 20).items()
            if len(s) >= 4}

    class Favour(ToyPopularity):
        name: ClassVar[str] = "favour"
        search_space: ClassVar[dict[str, list[Any]]] = {"favour": ["t", "v"]}  # "t" first: wins any tie

        def __init__(self, favour: str = "t") -> None:
            super().__init__()
            self.favour = favour

        def fit(self, data: TrainData) -> Self:
            self.bonus = np.array([str(i).startswith(self.favour) for i in data.items.ids], np.float32)
            return self

        def score(self, batch: QueryBatch) -> np.ndarray:
            return np.broadcast_to(self.bonus, (len(batch), len(self.bonus)))

    exp = run_experiment(sequences_frame(seqs), [Favour], ks=(3,))
    run = exp.models["favour"]
    assert run.params == {"favour": "v"}
    assert run.valid["HR@3"] == 1.0
    assert run.metrics["HR@3"] < 0.1  # what choosing honestly costs this model on the test targets


def test_no_test_target_reaches_any_fit() -> None:
    fits: list[pl.DataFrame] = []

    class Spy(ToyPopularity):
        name: ClassVar[str] = "spy"

        def fit(self, data: TrainData) -> Self:
            fits.append(data.events.with_columns(
                pl.Series("user_id", data.users.decode(data.events["user_idx"].to_list())),
                pl.Series("item_id", data.items.decode(data.events["item_idx"].to_list()))))
            return super().fit(data)

    ev = toy_events(50, 25, seed=4)
    exp = run_experiment(ev, [Spy], ks=(5,))
    split = leave_one_out(ev)
    assert len(fits) == 3  # two validation trials, one refit
    test_keys, valid_keys = _keys(split.test), _keys(split.valid)
    for f in fits:
        assert not _keys(f) & test_keys
    assert not _keys(fits[0]) & valid_keys and fits[0].height == split.train.height
    assert valid_keys <= _keys(fits[-1]) and fits[-1].height == split.history("test").height
    assert exp.split == {"train_events": split.train.height, "valid_targets": split.valid.height,
                         "test_targets": split.test.height, "gap_events": 0}


def test_candidate_params_are_bounded_seeded_and_start_with_the_first_point() -> None:
    space = {"a": [1, 2, 3], "b": ["x", "y", "z"]}
    assert len(candidate_params(space, 100)) == 9
    few = candidate_params(space, 4, seed=1)
    assert len(few) == 4 and few[0] == {"a": 1, "b": "x"} and len({tuple(p.items()) for p in few}) == 4
    assert few == candidate_params(space, 4, seed=1)
    assert candidate_params({}, 3) == [{}]
    with pytest.raises(ValueError):
        candidate_params(space, 0)


def test_max_trials_bounds_the_fits_and_seed_reaches_the_model() -> None:
    seeds: list[int] = []

    class Seeded(ToyPopularity):
        name: ClassVar[str] = "seeded"
        search_space: ClassVar[dict[str, list[Any]]] = {"sign": [1.0, -1.0, 0.5], "jitter": [0.0, 1.0]}

        def __init__(self, sign: float = 1.0, jitter: float = 0.0, seed: int = 0) -> None:
            super().__init__(sign)
            self.jitter, self.seed = jitter, seed

        def fit(self, data: TrainData) -> Self:
            seeds.append(self.seed)
            super().fit(data)
            self.counts = self.counts + self.jitter * np.random.default_rng(self.seed).random(len(self.counts))
            return self

    ev = toy_events(40, 20, seed=5)
    a = run_experiment(ev, [Seeded], ks=(5,), max_trials=3, seed=7)
    assert len(a.models["seeded"].trials) == 3 and seeds == [7, 7, 7, 7]
    b = run_experiment(ev, [Seeded], ks=(5,), max_trials=3, seed=7)
    assert a.models["seeded"].metrics == b.models["seeded"].metrics


def test_model_names_come_from_the_registry_and_failures_name_the_model() -> None:
    with pytest.raises(KeyError, match="known: toy-pop"):
        run_experiment(toy_events(20, 10), ["nope"], registry={"toy-pop": ToyPopularity})

    class Broken(ToyPopularity):
        name: ClassVar[str] = "broken"
        search_space: ClassVar[dict[str, list[Any]]] = {}

        def fit(self, data: TrainData) -> Self:
            raise RuntimeError("boom")

    with pytest.raises(ModelError, match=r"'broken'.*boom"):
        run_experiment(toy_events(20, 10), ["broken"], registry={"broken": Broken})


def test_temporal_protocol_and_sampled_labels() -> None:
    exp = run_experiment(toy_events(60, 30, seed=6), [ToyPopularity], protocol="temporal", ks=(10,), sampled=5,
                         max_trials=1)
    out = exp.to_dict()
    assert out["protocol"] == "temporal" and out["sampled"] == 5 and out["ranking"] == "sampled-5"
    entry = out["models"]["toy-pop"]
    assert entry["sampled"] == 5 and "HR@10 (sampled-5)" in entry and "HR@10" not in entry
    assert entry["trials"] == [] and exp.select_metric == "NDCG@10 (sampled-5)"
    with pytest.raises(ValueError, match="protocol"):
        run_experiment(toy_events(20, 10), [ToyPopularity], protocol="random")


def test_a_deep_model_reports_its_training_record_with_the_early_stopping_choice() -> None:
    from aisle.models.sequential import SASRec

    class TinySASRec(SASRec):
        search_space: ClassVar[dict[str, list[Any]]] = {
            "dim": [8], "epochs": [3], "holdout": [True], "progress": [False], "device": ["cpu"]}

    out = run_experiment(toy_events(60, 25, seed=1), [TinySASRec], ks=(10,), name="toy").to_dict()
    training = out["models"]["sasrec"]["training"]
    assert training["epochs_run"] == 3 and len(training["history"]) == 3
    best = max(training["history"], key=lambda h: h["NDCG@10"])
    assert training["best_epoch"] == best["epoch"] and training["best_metric"] == best["NDCG@10"]
    pop = run_experiment(toy_events(60, 25, seed=1), [ToyPopularity], ks=(10,)).to_dict()
    assert "training" not in pop["models"]["toy-pop"]  # only models that train epochs have a record
