"""The [inference] settings in serving: optimised user sources give the pipeline the same candidates, ANN above
the threshold, a failed optimisation falls back to the model's own scoring."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from aisle.config import ConfigError, InferenceConfig, load_settings
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.evaluate.protocol import item_vocab
from aisle.index import Retriever
from aisle.models.base import QueryBatch, TrainData
from aisle.optimize.serving import describe, indexed_online, optimize_pipeline, query_embedder
from aisle.pipeline import Pipeline, PipelineConfig, SourceSpec

TINY_SASREC = {"dim": 16, "layers": 1, "epochs": 2, "max_len": 12, "batch_size": 64, "progress": False,
               "device": "cpu"}
SOURCES = (SourceSpec("sasrec", "sasrec", "sequential", TINY_SASREC),
           SourceSpec("als", "als", "user", {"factors": 8, "iterations": 3}),
           SourceSpec("markov", "markov", "i2i", window=5, decay=0.5), SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def data() -> TrainData:
    s = generate(SyntheticConfig(n_items=300, n_users=120, n_events=6_000, seed=3))
    return TrainData.from_events(s.events, items=item_vocab(s.events, s.items), catalog=s.items)


@pytest.fixture(scope="module")
def pipe(data: TrainData) -> Pipeline:
    return Pipeline(PipelineConfig(sources=SOURCES, rounds=10)).fit(data)


def _batch(data: TrainData) -> QueryBatch:
    seqs = data.sequences()
    return QueryBatch(np.arange(12), [seqs[u] for u in range(12)])


def test_exact_optimised_sources_give_the_same_candidates(pipe: Pipeline, data: TrainData, tmp_path: Path) -> None:
    fast = optimize_pipeline(pipe, InferenceConfig(cache_dir=tmp_path, backend="onnx", item_table="exact"))
    assert isinstance(fast.source("sasrec").model, Retriever) and isinstance(fast.source("als").model, Retriever)
    assert pipe.source("sasrec").model is not fast.source("sasrec").model  # the loaded pipeline is left as it was
    assert describe(fast) == {"sasrec": "onnx + exact", "als": "vectors + exact"}
    assert not indexed_online(fast)
    a, b = pipe.candidates(_batch(data)), fast.candidates(_batch(data))
    for q in range(12):
        ia, ib = a.item[a.query == q], b.item[b.query == q]
        assert set(ia.tolist()) == set(ib.tolist())
        np.testing.assert_allclose(a.features.values[a.query == q][np.argsort(ia)],
                                   b.features.values[b.query == q][np.argsort(ib)], rtol=1e-3, atol=1e-3)


def test_catalogs_above_the_threshold_are_served_from_the_ann_index(pipe: Pipeline, data: TrainData,
                                                                    tmp_path: Path) -> None:
    cfg = InferenceConfig(cache_dir=tmp_path, backend="onnx-int8", ann="hnsw", ann_min_items=100, ef_search=128)
    fast = optimize_pipeline(pipe, cfg)
    assert fast.source("sasrec").model.index.spec.kind == "hnsw" and indexed_online(fast)
    exact = optimize_pipeline(pipe, InferenceConfig(cache_dir=tmp_path, backend="onnx-int8"))
    batch = _batch(data)
    got, ref = fast.source("als").model.top_n(batch, 20)[0], exact.source("als").model.top_n(batch, 20)[0]
    assert np.mean([len(np.intersect1d(x, y)) / 20 for x, y in zip(got, ref, strict=True)]) >= 0.9
    assert len(list(tmp_path.glob("index-hnsw-*"))) == 2  # cached: a restart loads them instead of building
    again = optimize_pipeline(pipe, cfg)
    np.testing.assert_array_equal(again.source("als").model.top_n(batch, 20)[0], got)


def test_disabled_or_failed_optimisation_keeps_the_models(pipe: Pipeline, data: TrainData, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    assert optimize_pipeline(pipe, InferenceConfig(enabled=False)) is pipe
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="aisle.optimize"):
        fast = optimize_pipeline(pipe, InferenceConfig(cache_dir=blocker, backend="onnx"))
    assert fast.source("sasrec").model is pipe.source("sasrec").model
    assert "serving it unoptimised" in caplog.text
    assert len(fast.candidates(_batch(data)).item) > 0


def test_inference_settings_from_the_environment() -> None:
    s = load_settings(env={"AISLE_INFERENCE__BACKEND": "torch-int8", "AISLE_INFERENCE__ANN_MIN_ITEMS": "5000",
                           "AISLE_INFERENCE__ANN": "ivf-pq"})
    assert s.inference.backend == "torch-int8" and s.inference.ann_min_items == 5000 and s.inference.ann == "ivf-pq"
    with pytest.raises(ConfigError, match="inference"):
        load_settings(env={"AISLE_INFERENCE__BACKEND": "tensorrt"})
    with pytest.raises(ConfigError, match="inference"):
        load_settings(env={"AISLE_INFERENCE__EF_SERCH": "10"})


def test_query_encoder_setting_picks_the_embedder(tmp_path: Path) -> None:
    from aisle.optimize.textenc import OnnxEmbedder
    from aisle.search.embed import Embedder

    onnx = query_embedder(InferenceConfig(query_encoder="onnx", cache_dir=tmp_path), tmp_path)
    plain = query_embedder(InferenceConfig(query_encoder="torch"), tmp_path)
    assert isinstance(onnx, OnnxEmbedder) and not onnx.int8
    assert type(plain) is Embedder
