"""Every entry of the model registry passes the recommender contract (aisle.testing.contract).

Parametrised over MODELS itself: registering a model that breaks the contract fails CI.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from aisle.models.base import Recommender
from aisle.models.registry import MODELS
from aisle.testing.contract import RecommenderContract

#: Constructor overrides that keep a model's fit on the toy data fast (the contract is about behaviour).
TOY_OVERRIDES: dict[str, dict[str, Any]] = {
    "als": {"factors": 16, "iterations": 10, "num_threads": 1},
    "bpr": {"factors": 16, "iterations": 50},
    # deep models: a small net for a few epochs (the toy is 80 users; real defaults train for minutes)
    **{name: {"dim": 32, "layers": 1, "batch_size": 32, "lr": 5e-3, "warmup_steps": 0, "epochs": 15, "dropout": 0.1,
              "progress": False, "device": "cpu"} for name in ("sasrec", "gru4rec", "twotower")},
}


@pytest.fixture(params=sorted(MODELS))
def make(request: pytest.FixtureRequest) -> Callable[[int], Recommender]:
    cls = MODELS[request.param]
    takes_seed = "seed" in inspect.signature(cls).parameters
    kwargs = TOY_OVERRIDES.get(request.param, {})

    def factory(seed: int) -> Recommender:
        return cls(**kwargs, **({"seed": seed} if takes_seed else {}))

    return factory


class TestRegisteredModels(RecommenderContract):
    pass


def test_registry_names_match_classes() -> None:
    for key, cls in MODELS.items():
        assert cls.name == key, f"MODELS[{key!r}] is {cls.__name__} named {cls.name!r}"
        assert isinstance(cls, type) and hasattr(cls, "fit") and hasattr(cls, "load")
