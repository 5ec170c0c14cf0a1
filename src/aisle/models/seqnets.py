"""Sequence encoders: a history of item ids in, one hidden state per position out.

Item id 0 is padding (histories are left-padded to `max_len`), so the model's item i is the data's
item index i - 1. Scores are dot products with the item embedding table (tied input/output
embeddings), optionally enriched by item side features (brand/category ids): tying keeps the
parameter count small, which is what lets these models train on a CPU.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


class CachedItemTable(nn.Module):
    """`item_table()` computed once and reused while the weights are frozen (eval mode, no autograd).

    Why: with side features (or the two-tower's item MLP) the table is a pooled/projected matrix over the whole
    catalog; rebuilding it on every `score` call made one query at 100k items cost ~260 ms, while serving needs
    only one matrix-vector product against a fixed table. The cache is keyed on every parameter's and buffer's
    storage and in-place version counter, so an optimiser step, `load_state_dict` or `.to(device)` invalidates
    it, and so does `train()`; in training mode or under autograd the table is always recomputed.
    """

    def compute_item_table(self) -> torch.Tensor:
        raise NotImplementedError

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, dim) output vectors of every item, padding row 0 included."""
        if self.training or torch.is_grad_enabled():
            return self.compute_item_table()
        key = tuple((t.data_ptr(), t._version) for t in itertools.chain(self.parameters(), self.buffers()))
        cached = self.__dict__.get("_table_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        table = self.compute_item_table()
        self.__dict__["_table_cache"] = (key, table)
        return table

    def train(self, mode: bool = True) -> CachedItemTable:
        self.__dict__.pop("_table_cache", None)
        return super().train(mode)


class ItemEmbedding(nn.Module):
    """Item vectors: an id embedding plus the mean of the item's side-feature embeddings, if any."""

    def __init__(self, n_items: int, dim: int, features: torch.Tensor | None = None, n_features: int = 0) -> None:
        super().__init__()
        self.ids = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.ids.weight, std=dim**-0.5)
        with torch.no_grad():
            self.ids.weight[0].zero_()
        self.features: torch.Tensor | None
        if features is not None and n_features:
            # features: (n_items + 1, F) feature ids per item, 0 = none; a fixed buffer, not a parameter
            self.register_buffer("features", features.long(), persistent=True)
            self.feat = nn.Embedding(n_features + 1, dim, padding_idx=0)
            nn.init.normal_(self.feat.weight, std=dim**-0.5)
        else:
            self.features = None
            self.feat = None

    def table(self) -> torch.Tensor:
        """(n_items + 1, dim) vectors for every item, padding row included."""
        w = self.ids.weight
        if self.feat is not None and self.features is not None:
            f = self.feat(self.features)  # (N+1, F, dim)
            mask = (self.features > 0).unsqueeze(-1).to(f.dtype)
            w = w + (f * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return w

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        if self.feat is None:
            return self.ids(seq)
        return (self.table() if table is None else table)[seq]


class SASRecNet(CachedItemTable):
    """Self-attentive sequential recommendation (Kang & McAuley 2018) with pre-norm blocks.

    Shorter inputs than `max_len` are exact (`trims_padding`): the net trains on histories left-padded to
    `max_len`, and every padding position enters a block as the same zero vector, so each one is the same
    attention key and value. A row with fewer pads than it was trained with therefore gets the missing ones
    as a log-count bias on the pads it has (n identical keys weigh exactly as one key with logit + log n), and
    the last position's state equals the full-length one (to float rounding). Serving encodes a typical
    6-item history in an 8-wide window instead of 50. A row shorter than `max_len` needs at least one pad.
    """

    trims_padding = True

    def __init__(self, n_items: int, *, dim: int = 64, layers: int = 2, heads: int = 1, max_len: int = 50,
                 dropout: float = 0.5, features: torch.Tensor | None = None, n_features: int = 0) -> None:
        super().__init__()
        self.max_len = max_len
        self.items = ItemEmbedding(n_items, dim, features, n_features)
        self.pos = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim * 2, dropout=dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.scale = math.sqrt(dim)
        self.heads = heads

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) item ids, left-padded with 0, L <= max_len -> (B, L, dim) hidden states.

        `table` is the precomputed `item_table()`, passed when the caller also needs it for the output
        layer, so side-feature embeddings are pooled once per step rather than twice.
        """
        length = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1).to(self.pos.weight.dtype)
        # positions and mask from tensor ops on `seq`, not Python ints: an ONNX trace keeps the length dynamic
        steps = torch.cumsum(torch.ones_like(seq[0]), 0)  # 1..L
        positions = steps + (self.max_len - 1) - steps[-1]  # max_len - L .. max_len - 1 (right-aligned)
        x = self.items(seq, table) * self.scale + self.pos(positions)
        x = self.drop(x) * keep
        zero = torch.zeros((), dtype=x.dtype, device=seq.device)
        causal = torch.where(steps[None, :] > steps[:, None], zero - float("inf"), zero)
        if length < self.max_len:  # see the class docstring; at max_len the bias is 0 and the plain mask serves
            mask = causal + self._pad_bias(seq)
            fast = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)  # the fused eval kernel returns NaN for this mask
            try:
                for block in self.blocks:
                    x = block(x, src_mask=mask) * keep
            finally:
                torch.backends.mha.set_fastpath_enabled(fast)
        else:
            for block in self.blocks:
                x = block(x, src_mask=causal, is_causal=True) * keep
        return self.norm(x)

    def _pad_bias(self, seq: torch.Tensor) -> torch.Tensor:
        """(B * heads, 1, L) attention-logit bias: log(pads trained with / pads present) on each pad key."""
        pad = seq <= 0
        real = (~pad).sum(1, keepdim=True).to(self.pos.weight.dtype)
        present = pad.sum(1, keepdim=True).to(self.pos.weight.dtype)
        bias = torch.log((self.max_len - real).clamp(min=1.0) / present.clamp(min=1.0))
        out = (pad.to(bias.dtype) * bias).unsqueeze(1)
        return out.repeat_interleave(self.heads, dim=0) if self.heads > 1 else out

    def compute_item_table(self) -> torch.Tensor:
        return self.items.table()


class GRU4RecNet(CachedItemTable):
    """GRU4Rec (Hidasi et al. 2016) trained, like SASRec here, with full cross-entropy over the catalog."""

    def __init__(self, n_items: int, *, dim: int = 64, layers: int = 1, max_len: int = 50, dropout: float = 0.3,
                 features: torch.Tensor | None = None, n_features: int = 0) -> None:
        super().__init__()
        self.max_len = max_len
        self.items = ItemEmbedding(n_items, dim, features, n_features)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.norm = nn.LayerNorm(dim)

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.gru(self.drop(self.items(seq, table)))
        return self.norm(out)

    def compute_item_table(self) -> torch.Tensor:
        return self.items.table()


__all__ = ["CachedItemTable", "GRU4RecNet", "ItemEmbedding", "SASRecNet"]
