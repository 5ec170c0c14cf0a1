"""What is actually served passes the same recommender contract as every registry model: the pipeline (sources ->
merge -> combiner) and the retriever that serving puts in place of a full-catalog model (its encoder and index).

A retriever is rebuilt from its saved model at each start, never saved itself, so it runs every check but the
persistence one; the pipeline runs them all. The sequential model is checked through its ONNX fp32 encoder: the
int8 encoder quantizes activations with ranges taken over the whole batch, so a row's scores move (~1e-3) with
its batch companions, which the contract's exact row-independence check rules out (serving encodes one request
at a time, so no shopper's answer depends on another's).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pytest

from aisle.config import InferenceConfig
from aisle.index import Retriever
from aisle.models.base import QueryBatch, Recommender, TrainData
from aisle.models.registry import MODELS
from aisle.optimize.serving import optimize_source
from aisle.pipeline import Pipeline, PipelineConfig, SourceSpec
from aisle.testing.contract import RecommenderContract

SOURCES = (SourceSpec("als", "als", "user", {"factors": 16, "iterations": 10, "num_threads": 1}),
           SourceSpec("itemknn", "itemknn", "i2i", decay=0.7),
           SourceSpec("markov", "markov", "i2i", window=5, decay=0.5),
           SourceSpec("fbt", "fbt", "bought_together"),
           SourceSpec("trending", "trending", "trending"))


class TestPipeline(RecommenderContract):
    @pytest.fixture
    def make(self) -> Callable[[int], Recommender]:
        return lambda seed: Pipeline(PipelineConfig(sources=SOURCES, rounds=20), seed=seed)


class ServedRetriever:
    """A registry model fitted, then served the way `aisle serve` serves it: a Retriever over an item index."""

    name: ClassVar[str] = "retriever"
    search_space: ClassVar[dict[str, list[Any]]] = {}

    def __init__(self, model: str = "als", index: str = "exact-int8", seed: int = 0, cache: Path | None = None,
                 backend: str = "onnx", **params: Any) -> None:
        self.model = MODELS[model](**params, **({"seed": seed} if model != "als" else {}))
        self.spec, self.cache, self.backend = index, cache, backend
        self.retriever: Retriever | None = None

    def fit(self, data: TrainData) -> Self:
        self.model.fit(data)
        cfg = InferenceConfig(item_table="exact-int8", ann="hnsw", ann_min_items=1 if self.spec == "hnsw" else 10**9,
                              ef_search=128, backend=self.backend)  # type: ignore[arg-type]
        self.retriever = optimize_source(self.model, cfg, self.cache or Path(), depth=100)
        assert self.retriever is not None
        return self

    def score(self, batch: QueryBatch) -> np.ndarray:
        assert self.retriever is not None
        return self.retriever.score(batch)


@pytest.fixture(params=[("als", "exact-int8"), ("als", "hnsw"), ("sasrec", "exact-int8")], ids=lambda p: "-".join(p))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Any]:
    model, index = request.param
    params = {"factors": 16, "iterations": 10, "num_threads": 1} if model == "als" else {
        "dim": 32, "layers": 1, "batch_size": 32, "lr": 5e-3, "warmup_steps": 0, "epochs": 15, "dropout": 0.1,
        "progress": False, "device": "cpu"}
    cache = tmp_path_factory.mktemp("optimize")
    return lambda seed: ServedRetriever(model, index, seed=seed, cache=cache, **params)


class TestServedRetriever(RecommenderContract):
    @pytest.fixture
    def make(self, served: Callable[[int], Any]) -> Callable[[int], Any]:
        return served

    def test_save_load(self, make: Callable[[int], Any]) -> None:
        pytest.skip("a retriever is rebuilt from its saved model at start-up, never saved itself")
