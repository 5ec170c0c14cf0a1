"""Content-based recommendations from item text, embedded with the packaged MiniLM.

Why: it is the only model here that can recommend an item nobody has interacted with yet (a new product
is recommendable the moment it has a title), and it gives "similar items" on a catalog with no traffic.
Design choices:

- An item's text is its title, brand, category path and the start of its description (from
  `TrainData.catalog`); items without any text get a zero vector and are neutral (score 0).
- Embeddings come from `aisle.search.embed.Embedder` (all-MiniLM-L6-v2 shipped as a package, so nothing is
  downloaded; batched encoding with a progress bar for large catalogs; L2-normalised), on CUDA when
  available. One encoder per device is shared by the process: loading it costs seconds, encoding a
  catalog of a few items costs milliseconds.
- A query's profile is the recency-weighted sum of its history's vectors (`history_decay`), normalised;
  scores are cosine similarities to every item. `popularity_weight` > 0 blends in log-popularity, which
  helps warm items and (by design) leaves cold items competitive only on text.
- The embeddings are the model: `save` writes them as `embeddings.npy`, so loading never re-encodes.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.models.common import history_matrix, load_array, topk_dense

_DESCRIPTION_CHARS = 400  # MiniLM reads ~256 tokens; the start of a description says the most


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=2)
def _embedder(device: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from aisle.search.embed import Embedder

    return Embedder(None, device=device)


def item_texts(catalog: pl.DataFrame | None, n_items: int) -> list[str]:
    """One text per item index: "title. brand. cat > sub. description" (empty parts skipped)."""
    if catalog is None:
        return [""] * n_items
    cols = set(catalog.columns)

    def col(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String).fill_null("").str.strip_chars() if name in cols else pl.lit("")

    cats = (pl.col("categories").list.join(" > ").fill_null("") if "categories" in cols else pl.lit(""))
    desc = col("description").str.slice(0, _DESCRIPTION_CHARS)
    parts = pl.concat_list([col("title"), col("brand"), cats, desc]).list.eval(pl.element().filter(pl.element() != ""))
    texts = catalog.select(parts.list.join(". ").alias("text"))["text"].fill_null("").to_list()
    return texts + [""] * (n_items - len(texts))


class ContentSimilarity:
    name: ClassVar[str] = "content"
    search_space: ClassVar[dict[str, list[Any]]] = {"history_decay": [0.7, 1.0], "popularity_weight": [0.0, 0.05]}

    def __init__(self, history_decay: float = 0.7, popularity_weight: float = 0.0, device: str | None = None,
                 batch_progress: bool | None = None) -> None:
        self.history_decay, self.popularity_weight = history_decay, popularity_weight
        self.device, self.batch_progress = device, batch_progress
        self.embeddings: np.ndarray | None = None
        self.popularity: np.ndarray | None = None

    def fit(self, data: TrainData) -> Self:
        texts = item_texts(data.catalog, data.n_items)
        has_text = np.array([bool(t) for t in texts])
        emb = np.zeros((data.n_items, 384), np.float32)
        if has_text.any():
            wanted = [t for t in texts if t]
            progress = len(wanted) >= 2000 if self.batch_progress is None else self.batch_progress
            vecs = _embedder(self.device or default_device()).embed_texts(wanted, progress=progress)
            emb = np.zeros((data.n_items, vecs.shape[1]), np.float32)
            emb[has_text] = vecs
        ev = data.events.filter(pl.col("weight") > 0)
        counts = np.bincount(ev["item_idx"].to_numpy(), minlength=data.n_items).astype(np.float64)
        pop = np.log1p(counts)
        self.embeddings = emb
        self.popularity = (pop / pop.max() if pop.max() > 0 else pop).astype(np.float32)
        return self

    def score(self, batch: QueryBatch) -> np.ndarray:
        if self.embeddings is None or self.popularity is None:
            raise RuntimeError(f"{self.name} is not fitted")
        h = history_matrix(batch, len(self.embeddings), decay=self.history_decay)
        profile = np.asarray(h @ self.embeddings, dtype=np.float32)
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        scores = profile @ self.embeddings.T
        if self.popularity_weight:
            scores += self.popularity_weight * self.popularity[None, :]
        return scores.astype(np.float32, copy=False)

    def similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items by cosine of their text embeddings; an item without text has no neighbours."""
        if self.embeddings is None:
            raise RuntimeError(f"{self.name} is not fitted")
        items = np.asarray(items, dtype=np.int64)
        ok = (items >= 0) & (items < len(self.embeddings))
        q = self.embeddings[np.where(ok, items, 0)]
        ok &= np.linalg.norm(q, axis=1) > 0
        sims = np.where(ok[:, None], q @ self.embeddings.T, -np.inf)
        sims[:, np.linalg.norm(self.embeddings, axis=1) == 0] = -np.inf
        return topk_dense(sims, k, exclude_self=items)

    def save(self, path: Path) -> None:
        if self.embeddings is None or self.popularity is None:
            raise RuntimeError(f"{self.name} is not fitted")
        write_config(path, self.name, {"history_decay": self.history_decay,
                                       "popularity_weight": self.popularity_weight, "device": self.device,
                                       "batch_progress": self.batch_progress})
        np.save(path / "embeddings.npy", self.embeddings)
        np.save(path / "popularity.npy", self.popularity)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls(**read_config(path, cls.name))
        model.embeddings = load_array(path / "embeddings.npy")
        model.popularity = load_array(path / "popularity.npy")
        return model
