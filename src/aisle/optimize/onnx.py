"""ONNX export of a sequential model's encoder, onnxruntime's dynamic int8 quantisation, and sessions.

The batch axis is dynamic; so is the history length for nets that are exact on shorter windows
(`trims_padding`, SASRec), whose encoders then pad a request only to its longest history; other nets' graphs
take `max_len`. Fixed-length graphs come from the TorchScript-based exporter (`dynamo=False`, a few seconds);
dynamic-length ones from the dynamo exporter (`torch.export` with a `Dim` for the length, ~10 s for SASRec):
the TorchScript trace bakes the example's length into nn.MultiheadAttention's key reshape. The parity tests
run on the result.

Files are named by a digest of the weights (`sasrec-<digest>.onnx`), so a cache folder never serves a graph of
other weights. Sessions run with a fixed number of intra-op threads (1 for a single request: on shared cores
spinning threads cost more than they give) and full graph optimisation; the CUDA provider is used when this
onnxruntime build has it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from aisle.models.sequential import SequentialRecommender

OPSET = 17
DYNAMO_OPSET = 18
#: names the quantisation recipe in cached file names, so a changed recipe never reuses an old file
INT8_TAG = "int8pc"
#: names the export format (v2: dynamic history length) in cached file names, for the same reason
EXPORT_TAG = "v2"


def weights_digest(model: SequentialRecommender) -> str:
    """A short digest of the model's weights and shape-defining config."""
    if model.net is None:
        raise RuntimeError(f"{model.name} is not fitted")
    h = hashlib.sha1(f"{model.name}:{model.seq.max_len}:{model.n_items}".encode())
    for key, value in sorted(model.net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def export_encoder(model: SequentialRecommender, path: Path) -> Path:
    """Write the frozen encoder ((B, L) int64 ids -> (B, dim) float32) as an ONNX file; L is `max_len`, or any
    length up to it for nets that trim padding (the export traces a shorter window, the general path)."""
    from aisle.optimize.encoders import FrozenEncoder

    if model.net is None:
        raise RuntimeError(f"{model.name} is not fitted")
    enc = FrozenEncoder(copy.deepcopy(model.net).cpu().eval())  # a copy: the model's own net stays as it is
    max_len = model.seq.max_len
    trims = bool(getattr(model.net, "trims_padding", False)) and max_len > 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    names = {"input_names": ["history"], "output_names": ["user_vector"]}
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet("torch.onnx", "onnxscript", "torch._export"):
            warnings.simplefilter("ignore")  # the exporters' deprecation and tracer warnings
            if trims:  # traced on a window shorter than max_len: the general path (pad bias), exact at max_len too
                example = torch.ones((2, max_len // 2), dtype=torch.long)
                example[0, 0] = 0
                length = torch.export.Dim("length", min=2, max=max_len - 1)
                prog = torch.onnx.export(enc, (example,), None, **names, opset_version=DYNAMO_OPSET, dynamo=True,
                                         dynamic_shapes=({0: torch.export.Dim("batch"), 1: length},),
                                         verbose=False)
                prog.save(str(tmp))
            else:
                example = torch.ones((2, max_len), dtype=torch.long)
                torch.onnx.export(enc, (example,), str(tmp), **names, opset_version=OPSET, dynamo=False,
                                  dynamic_axes={"history": {0: "batch"}, "user_vector": {0: "batch"}})
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """The exporters and the quantiser log chatter at WARNING; keep it out of the user's log ("" = root)."""
    saved = [(lg, lg.level) for lg in (logging.getLogger(n) for n in loggers)]
    for lg, _ in saved:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def quantize_int8(src: Path, dst: Path, *, per_channel: bool = True, unsigned: bool = True,
                  gather: bool = False) -> Path:
    """onnxruntime dynamic quantisation: 8-bit weights for every MatMul/Gemm (and the embedding Gathers when
    `gather`), activations quantised per call. Per-channel unsigned weights are the default: on the MiniLM
    encoder they kept query vectors at cosine >= 0.99 to fp32, per-tensor signed ones at 0.93 (on AVX2 CPUs
    signed int8 x int8 products can saturate, onnxruntime's own guidance)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    tmp = dst.with_suffix(f".{os.getpid()}.tmp")
    ops = ["MatMul", "Gemm", *(["Gather"] if gather else [])]
    try:
        with _quiet(""):  # quantize_dynamic logs a pre-processing hint through the root logger
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8,
                             op_types_to_quantize=ops, per_channel=per_channel)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def onnx_files(model: SequentialRecommender, folder: Path, *, int8: bool = False) -> tuple[Path, Path]:
    """(fp32 path, int8 path) in `folder`, exporting / quantising what is missing (int8 only when asked)."""
    folder = Path(folder)
    stem = f"{model.name}-{weights_digest(model)}-{EXPORT_TAG}"
    fp32, q8 = folder / f"{stem}.onnx", folder / f"{stem}-{INT8_TAG}.onnx"
    if not fp32.exists():
        export_encoder(model, fp32)
    if int8 and not q8.exists():
        quantize_int8(fp32, q8)
    return fp32, q8


def providers() -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def session(path: Path, *, threads: int = 1) -> Any:
    """An InferenceSession with `threads` intra-op threads, no spinning, full graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers())


__all__ = ["EXPORT_TAG", "INT8_TAG", "OPSET", "export_encoder", "onnx_files", "providers", "quantize_int8", "session",
           "weights_digest"]
