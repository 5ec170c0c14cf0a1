"""The MiniLM query encoder in ONNX Runtime against the PyTorch one (the packaged weights, exported here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.optimize.textenc import OnnxEmbedder
from aisle.search.embed import Embedder

QUERIES = ["ligt bulb 60w", "moen faucet under $100", "1/2 in. pvc elbow", "cordless drill", "a",
           "outdoor patio furniture cushions with a very long description that goes on " * 4]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    plain = Embedder(None)
    return np.stack([plain.embed_query(q) for q in QUERIES])


@pytest.mark.slow
def test_onnx_query_vectors_match_pytorch(onnx_dir: Path, reference: np.ndarray) -> None:
    fast = OnnxEmbedder(None, onnx_dir=onnx_dir)
    got = np.stack([fast.embed_query(q) for q in QUERIES])
    assert np.abs(got - reference).max() < 1e-4  # the same function (long queries truncated alike)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert fast.embed_query(QUERIES[0]) is fast.embed_query(QUERIES[0])  # cached
    batch = fast.encoder.encode(QUERIES)  # padded batch: the mask keeps padding out of the mean
    assert np.abs(batch - reference).max() < 1e-4


@pytest.mark.slow
def test_int8_query_vectors_stay_close(onnx_dir: Path, reference: np.ndarray) -> None:
    q8 = OnnxEmbedder(None, onnx_dir=onnx_dir, int8=True)
    got = np.stack([q8.embed_query(q) for q in QUERIES])
    assert (got * reference).sum(axis=1).min() > 0.97


def test_without_an_export_the_pytorch_encoder_serves(tmp_path: Path, reference: np.ndarray) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    fast = OnnxEmbedder(None, onnx_dir=blocker)  # cannot export there
    assert fast.encoder is None
    np.testing.assert_allclose(fast.embed_query(QUERIES[1]), reference[1], atol=1e-6)
