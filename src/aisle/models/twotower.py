"""Two-tower retrieval model: a user tower over the history, an item tower over id + attributes.

Why this shape: a two-tower model scores a user against an item with one dot product of two independently
computed vectors, so item vectors can be precomputed and served from an ANN index, and the user vector of a
brand-new session is computed from what it did (no user id needed). Here

- the item tower maps an item's id embedding plus the mean of its attribute embeddings (brand/category ids from
  the catalog or `*_item2attributes.json`) through a residual MLP to a unit vector;
- the user tower reads the item-tower vectors of the history and pools them three ways at every position —
  the last item, an exponentially decayed mean (recency) and the plain mean (long-term taste) — then a
  residual MLP maps the concatenation to a unit vector. Pooling is causal, so every position of a training
  sequence is a training example, as for SASRec;
- training is full-softmax CE over the catalog by default, as for SASRec and GRU4Rec here; softmax over the
  batch's distinct target items with the log-frequency correction (`loss = "inbatch"`, Yi et al. 2019) is the
  option for catalogs too large for a full softmax: a step then never touches the rest of the catalog.

Scores are cosine similarities divided by `temperature`. The defaults (CE, temperature 0.2, 128 sequences per
batch) replace an in-batch recipe (temperature 0.05, 512 sequences) that learned too slowly to be usable: 512
sequences made an epoch only a few optimiser steps (two on MovieLens-100K), so the 50-step warm-up spanned many
epochs and the hold-out early stopping ended the fit while the learning rate was still rising; and a temperature
of 0.05 made the softmax so peaked that the model fell back on a few popular items. benchmarks/RESULTS.md
("GRU4Rec and two-tower rows on Beauty and Sports, and the two-tower's new recipe") has the validation trials.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aisle.models.seqnets import CachedItemTable, ItemEmbedding
from aisle.models.seqtask import SeqConfig
from aisle.models.sequential import SequentialRecommender
from aisle.train.trainer import TrainConfig


class _ResidualMLP(nn.Module):
    def __init__(self, d_in: int, dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * 2), nn.GELU(), nn.Dropout(dropout),
                          nn.Linear(dim * 2, dim))
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = x + block(x)
        return x


class TwoTowerNet(CachedItemTable):
    def __init__(self, n_items: int, *, dim: int = 64, layers: int = 1, max_len: int = 50, dropout: float = 0.2,
                 decay: float = 0.7, temperature: float = 0.05, features: torch.Tensor | None = None,
                 n_features: int = 0) -> None:
        super().__init__()
        self.max_len = max_len
        self.items = ItemEmbedding(n_items, dim, features, n_features)
        self.item_tower = _ResidualMLP(dim, dim, layers, dropout)
        self.user_tower = _ResidualMLP(3 * dim, dim, layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.scale = 1.0 / temperature
        steps = torch.arange(max_len, dtype=torch.float32)
        lag = steps.unsqueeze(1) - steps.unsqueeze(0)  # [t, s] = t - s
        self.register_buffer("decay_weights", torch.where(lag >= 0, decay ** lag.clamp(min=0), 0.0),
                             persistent=False)

    def compute_item_table(self) -> torch.Tensor:
        """(n_items + 1, dim) unit item vectors (row 0, padding, included), scaled by 1/temperature once."""
        return F.normalize(self.item_tower(self.items.table()), dim=-1) * self.scale**0.5

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) left-padded item ids -> (B, L, dim) user vectors of every prefix."""
        table = self.item_table() if table is None else table
        keep = (seq > 0).unsqueeze(-1).to(table.dtype)
        x = self.drop(table[seq]) * keep
        length = seq.shape[1]
        w = self.decay_weights[:length, :length].to(x.dtype)
        recent = (w @ x) / (w @ keep).clamp(min=1e-6)
        mean = x.cumsum(1) / keep.cumsum(1).clamp(min=1.0)
        user = self.user_tower(torch.cat([x, recent, mean], dim=-1))
        return F.normalize(user, dim=-1) * self.scale**0.5


class TwoTower(SequentialRecommender):
    """Two-tower model, full-softmax CE by default (see the module docstring for why, and for `inbatch`)."""

    name = "twotower"
    net_class = TwoTowerNet
    # chosen on validation targets (MovieLens-100K, then Amazon Beauty's internal hold-out): RESULTS.md
    default_seq = SeqConfig(layers=1, dropout=0.2, loss="ce", batch_size=128, temperature=0.2)
    # a bounded budget that early-stops on the held-out last items; patience 5, as the curve is noisy epoch to epoch
    default_train = TrainConfig(epochs=20, lr=3e-3, warmup_steps=50, schedule="cosine", patience=5)
    search_space: ClassVar[dict[str, list[Any]]] = {}

    def _net_kwargs(self) -> dict[str, Any]:
        return {**super()._net_kwargs(), "temperature": self.seq.temperature}


__all__ = ["TwoTower", "TwoTowerNet"]
