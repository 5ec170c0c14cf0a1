"""A small fitted SASRec with side features (the item table is then computed, not just looked up)."""

from __future__ import annotations

import pytest

from aisle.models.sequential import SASRec
from aisle.testing.contract import planted_toy

SMALL = {"dim": 16, "layers": 2, "epochs": 10, "batch_size": 32, "progress": False, "device": "cpu", "max_len": 12,
         "dropout": 0.1, "lr": 5e-3, "warmup_steps": 0}


@pytest.fixture(scope="package")
def sasrec() -> SASRec:
    model = SASRec(**SMALL).fit(planted_toy().train)
    assert model.features is not None  # the toy catalog's categories are side features
    return model
