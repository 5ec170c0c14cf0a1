"""Encoder backends against the model's own scores: fp32 at round-off, int8 close, ONNX files cached by weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from aisle.models.base import QueryBatch
from aisle.models.sequential import GRU4Rec, SASRec
from aisle.optimize.encoders import BACKENDS, make_encoder, max_abs_diff
from aisle.optimize.onnx import onnx_files, weights_digest
from aisle.optimize.parity import score_parity
from aisle.optimize.prune import magnitude_prune
from aisle.testing.contract import planted_toy


def _batch() -> QueryBatch:
    toy = planted_toy()
    long = np.tile(toy.histories[0], 4)  # longer than max_len: the last max_len items count
    return QueryBatch.of_histories([*toy.histories[:15], long, np.array([], np.int64), np.array([-1, 99, 3])])


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_scores_like_the_model(sasrec: SASRec, backend: str, tmp_path: Path) -> None:
    enc = make_encoder(sasrec, backend, folder=tmp_path)
    batch = _batch()
    ref = sasrec.score(batch)
    diff, overlap = score_parity(sasrec, enc, list(batch.histories))
    if backend in ("torch", "onnx"):
        assert max_abs_diff(enc.score(batch), ref) < 1e-4  # the same function
        assert overlap == 1.0
    else:
        assert diff < 0.1 * float(np.abs(ref).max())  # an approximation, but a close one
        assert overlap >= 0.8
    np.testing.assert_allclose(enc.item_vectors(), sasrec.item_vectors())


def test_onnx_export_of_gru4rec_matches(tmp_path: Path) -> None:
    model = GRU4Rec(dim=16, epochs=1, batch_size=32, progress=False, device="cpu", max_len=12).fit(planted_toy().train)
    enc = make_encoder(model, "onnx", folder=tmp_path)
    assert max_abs_diff(enc.score(_batch()), model.score(_batch())) < 1e-4


def test_onnx_files_are_cached_by_weights(sasrec: SASRec, tmp_path: Path) -> None:
    fp32, _ = onnx_files(sasrec, tmp_path)
    stamp = fp32.stat().st_mtime_ns
    again, q8 = onnx_files(sasrec, tmp_path, int8=True)
    assert again == fp32 and again.stat().st_mtime_ns == stamp and q8.exists()
    ops = {n.op_type for n in onnx.load(str(q8)).graph.node}
    assert "MatMulInteger" in ops and "MatMulInteger" not in {n.op_type for n in onnx.load(str(fp32)).graph.node}
    other = magnitude_prune(sasrec, 0.5)
    assert weights_digest(other) != weights_digest(sasrec)
    assert onnx_files(other, tmp_path)[0] != fp32


def test_bad_backend_and_missing_folder_are_clear_errors(sasrec: SASRec) -> None:
    with pytest.raises(ValueError, match="unknown inference backend"):
        make_encoder(sasrec, "tensorrt")
    with pytest.raises(ValueError, match="needs a folder"):
        make_encoder(sasrec, "onnx")
    with pytest.raises(RuntimeError, match="not fitted"):
        make_encoder(SASRec(), "torch")
    with pytest.raises(ValueError, match="shapes differ"):
        max_abs_diff(np.zeros(2), np.zeros(3))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_short_requests_are_encoded_in_a_shorter_window_with_the_same_scores(sasrec: SASRec, backend: str,
                                                                             tmp_path: Path) -> None:
    """SASRec trims padding: a request of short histories runs in an 8-wide window (max_len is 12) and
    scores exactly as the model's own full-width pass."""
    enc = make_encoder(sasrec, backend, folder=tmp_path)
    short = QueryBatch.of_histories([h[-3:] for h in planted_toy().histories[:6]] + [np.array([], np.int64)])
    assert enc.padded(short).shape[1] == 8 < sasrec.seq.max_len
    assert max_abs_diff(enc.score(short), sasrec.score(short)) < 1e-4
    seven = QueryBatch.of_histories([np.tile(planted_toy().histories[0], 4)[:7]])  # 7 items + 1 pad = 8
    assert enc.padded(seven).shape[1] == 8
    assert max_abs_diff(enc.score(seven), sasrec.score(seven)) < 1e-4
