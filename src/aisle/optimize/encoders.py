"""Inference-only encoders of a sequential model: history in, user vector out, in PyTorch or ONNX Runtime.

A fitted `SequentialRecommender` scores a history as `encode(history) . item_table`. Its `score` recomputes the
item table (id embedding + pooled side-feature embeddings of every item) on every call, which for Beauty's
12k items costs more than the transformer itself. Here the table is computed once (`FrozenEncoder`), the
encoder runs in one of four backends, and the item vectors go to an `aisle.index.ItemIndex`:

- `torch`: the model's own modules, fp32;
- `torch-int8`: `torch.ao.quantization.quantize_dynamic` over its `nn.Linear` layers (int8 weights, activations
  quantised per call; the attention projections stay fp32: PyTorch's MultiheadAttention keeps them out);
- `onnx`, `onnx-int8`: the same graph exported to ONNX (`aisle.optimize.onnx`) and run by ONNX Runtime, fp32 or
  with onnxruntime's dynamic int8 quantisation of every MatMul and of the item-table Gather.

Every encoder is an `aisle.index.VectorModel` (`user_vectors`, `item_vectors`), so `aisle.index.Retriever`
serves it. Histories are left-padded to the model's `max_len`, exactly as `score` pads them, or, for nets that
are exact on shorter windows (`trims_padding`: SASRec), to the longest history of the request plus one pad,
rounded up to a multiple of 8; either way the fp32 backends give the model's own scores (the parity tests
check it).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aisle.models.base import QueryBatch
from aisle.models.seqtask import left_pad
from aisle.models.sequential import SequentialRecommender

BACKENDS = ("torch", "torch-int8", "onnx", "onnx-int8")


class FrozenEncoder(nn.Module):
    """(B, max_len) left-padded model ids -> (B, dim) last hidden state, with the item table as a fixed buffer."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        with torch.no_grad():
            self.register_buffer("table", net.item_table().detach().clone())

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.net(seq, self.table)[:, -1]


class SequenceEncoder:
    """Shared padding and item vectors; subclasses run the padded batch."""

    backend: str = "torch"

    def __init__(self, *, name: str, max_len: int, items: np.ndarray, trim: bool = False) -> None:
        self.name, self.max_len, self.trim = name, max_len, trim
        self._items = np.ascontiguousarray(items, dtype=np.float32)
        self.n_items = len(self._items)

    @staticmethod
    def meta(model: SequentialRecommender) -> dict[str, Any]:
        """What every encoder needs of a fitted model besides its weights: name, max_len, item vectors, and
        whether its net is exact on windows shorter than max_len."""
        if model.net is None:
            raise RuntimeError(f"{model.name} is not fitted")
        return {"name": model.name, "max_len": model.seq.max_len, "items": model.item_vectors(),
                "trim": bool(getattr(model.net, "trims_padding", False))}

    def item_vectors(self) -> np.ndarray:
        return self._items

    def padded(self, batch: QueryBatch) -> np.ndarray:
        hists = [np.asarray(h, np.int64) for h in batch.histories]
        rows = [h[(h >= 0) & (h < self.n_items)] + 1 for h in hists]
        width = self.max_len
        if self.trim:  # one pad at least (see SASRecNet), multiples of 8 so few distinct shapes reach the runtime
            longest = max((len(r) for r in rows), default=0)
            width = min(self.max_len, -(-(longest + 1) // 8) * 8)
        return left_pad(rows, width)

    def user_vectors(self, batch: QueryBatch) -> np.ndarray:
        seq = self.padded(batch)
        out = np.empty((len(seq), self._items.shape[1]), np.float32)
        for a in range(0, len(seq), 1024):
            out[a:a + 1024] = self.run(seq[a:a + 1024])
        return out

    def run(self, seq: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, batch: QueryBatch) -> np.ndarray:
        """Exact fp32 scores over all items (the Recommender protocol), from this encoder's user vectors."""
        return self.user_vectors(batch) @ self._items.T


class TorchEncoder(SequenceEncoder):
    def __init__(self, model: SequentialRecommender, *, int8: bool = False) -> None:
        super().__init__(**self.meta(model))
        assert model.net is not None
        frozen = FrozenEncoder(copy.deepcopy(model.net).cpu().eval() if int8 else model.net.eval())
        if int8:
            with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
                warnings.simplefilter("ignore")
                frozen = torch.ao.quantization.quantize_dynamic(frozen, {nn.Linear}, dtype=torch.qint8)
        self.module = frozen.eval()
        self.device = next(iter(frozen.buffers())).device
        self.backend = "torch-int8" if int8 else "torch"

    @torch.inference_mode()
    def run(self, seq: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(seq).to(self.device)).float().cpu().numpy()


class OnnxEncoder(SequenceEncoder):
    """The encoder exported to `path` (see `aisle.optimize.onnx.export_encoder`), run by ONNX Runtime; it needs
    no PyTorch weights, only the ONNX file and the item vectors (`OnnxEncoder.of` takes them from a model)."""

    def __init__(self, path: Path, *, name: str, max_len: int, items: np.ndarray, trim: bool = False,
                 threads: int = 1, int8: bool = False) -> None:
        from aisle.optimize.onnx import session

        sess = session(Path(path), threads=threads)
        dynamic = not isinstance(sess.get_inputs()[0].shape[1], int)  # a graph of fixed length takes max_len
        super().__init__(name=name, max_len=max_len, items=items, trim=trim and dynamic)
        self.path = Path(path)
        self.session = sess
        self.input = self.session.get_inputs()[0].name
        self.backend = "onnx-int8" if int8 else "onnx"

    @classmethod
    def of(cls, model: SequentialRecommender, path: Path, *, threads: int = 1, int8: bool = False) -> OnnxEncoder:
        return cls(path, **cls.meta(model), threads=threads, int8=int8)

    def run(self, seq: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input: seq})[0], np.float32)


def make_encoder(model: SequentialRecommender, backend: str, *, folder: Path | None = None, threads: int = 1,
                 ) -> SequenceEncoder:
    """An encoder of `backend` for `model`; ONNX backends export (and quantise) into `folder` when missing."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend in ("torch", "torch-int8"):
        return TorchEncoder(model, int8=backend == "torch-int8")
    from aisle.optimize.onnx import onnx_files

    if folder is None:
        raise ValueError(f"backend {backend!r} needs a folder for the ONNX files")
    fp32, int8 = onnx_files(model, Path(folder), int8=backend == "onnx-int8")
    q8 = backend == "onnx-int8"
    return OnnxEncoder.of(model, int8 if q8 else fp32, threads=threads, int8=q8)


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two arrays of the same shape (parity reports)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    return float(np.max(np.abs(x - y))) if x.size else 0.0


__all__ = ["BACKENDS", "FrozenEncoder", "OnnxEncoder", "SequenceEncoder", "TorchEncoder", "make_encoder",
           "max_abs_diff"]
