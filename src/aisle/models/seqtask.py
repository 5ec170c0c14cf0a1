"""The training task every deep sequence model shares: next-item prediction at every position of a history.

A user's item sequence, shifted by one, is one training row: position t sees items[:t + 1] and must predict
items[t + 1]. The loss is one of

- `ce`: softmax cross-entropy over the whole catalog at every position (what makes SASRec strong; Klenitskiy &
  Vasilev 2023), with optional label smoothing;
- `sampled`: softmax over the target and `negatives` uniformly drawn items, shared by the batch (for catalogs
  too large to score whole at every step);
- `gbce`: gSASRec's generalised binary cross-entropy (Petrov & Macdonald 2023): `negatives` uniform negatives
  and the positive's probability raised to beta, which calibrates the scores as if every item were a negative;
- `inbatch`: softmax over the batch's distinct target items with the log-frequency correction (Yi et al. 2019),
  the two-tower recipe: no item outside the batch is touched in a step.

With `holdout` on, each user's last item is held out as the early-stopping target (`validate`: NDCG@10 and HR@10
over all items, history excluded). Batches are sharded over DDP ranks; the global batch stays `batch_size`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from aisle.train.distributed import DistContext

LOSSES = ("ce", "sampled", "gbce", "inbatch")


@dataclass(frozen=True)
class SeqConfig:
    dim: int = 64
    layers: int = 2
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.5
    batch_size: int = 256
    loss: str = "ce"  # one of LOSSES
    negatives: int = 256  # for "sampled" and "gbce"
    gbce_t: float = 0.75  # gSASRec's calibration: 0 = plain BCE, 1 = fully calibrated
    label_smoothing: float = 0.0
    temperature: float = 1.0  # two-tower only: cosine scores are divided by it
    use_features: bool = True
    holdout: bool = True  # hold each user's last item out to stop early; False trains `epochs` on everything

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.dim < 1 or self.max_len < 1 or self.batch_size < 1 or self.negatives < 1:
            raise ValueError("dim, max_len, batch_size and negatives must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def left_pad(seqs: list[np.ndarray], length: int) -> np.ndarray:
    """Right-aligned rows of the last `length` items of each sequence, 0 = padding."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[i, length - len(s):] = s
    return out


def last_scores(module: torch.nn.Module, hist: torch.Tensor) -> torch.Tensor:
    """Scores over model ids (column 0 = padding, -inf) from the last position of each left-padded history."""
    table = module.item_table()
    h = module(hist, table)[:, -1]
    scores = h @ table.T
    scores[:, 0] = float("-inf")
    return scores


class SequenceTask:
    """Batches of (input, target) sequences shifted by one; validation on each user's held-out last item."""

    def __init__(self, sequences: list[np.ndarray], cfg: SeqConfig, n_items: int, seed: int) -> None:
        self.cfg, self.n_items, self.seed = cfg, n_items, seed
        train, val_hist, val_target = [], [], []
        for s in sequences:
            s = s + 1  # model ids: 0 is padding
            if cfg.holdout and len(s) >= 3:
                val_hist.append(s[:-1])
                val_target.append(int(s[-1]))
                s = s[:-1]
            if len(s) >= 2:
                train.append(s)
        self.train = left_pad(train, cfg.max_len + 1)
        self.lengths = (self.train > 0).sum(1)
        self.val_hist = left_pad(val_hist, cfg.max_len)
        self.val_target = np.asarray(val_target, dtype=np.int64)
        # log of each item's share of the training targets: the in-batch sampling correction
        counts = np.bincount(self.train[:, 1:].ravel(), minlength=n_items + 1)[: n_items + 1].astype(np.float64)
        counts[0] = 0.0
        self.log_q = torch.from_numpy(np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))).float()

    @property
    def has_validation(self) -> bool:
        return len(self.val_target) > 0

    def _rank_batch(self, ctx: DistContext) -> int:
        # the global batch stays `batch_size` whatever the world size, so N processes take the same
        # optimisation steps as one (DDP averages their gradients) and reach the same accuracy
        return -(-self.cfg.batch_size // ctx.world_size)

    def n_batches(self, ctx: DistContext) -> int:
        per_rank = -(-len(self.train) // ctx.world_size)
        return -(-per_rank // self._rank_batch(ctx))

    def batches(self, epoch: int, ctx: DistContext) -> Iterator[torch.Tensor]:
        order = np.random.default_rng(self.seed + epoch).permutation(len(self.train))
        shard = order[ctx.rank::ctx.world_size]
        # every rank runs the same number of steps (DDP all-reduces each step): pad the shard by wrapping
        per_rank = -(-len(self.train) // ctx.world_size)
        if len(shard) < per_rank:
            shard = np.concatenate([shard, order[: per_rank - len(shard)]])
        size = self._rank_batch(ctx)
        # bucket by length inside shuffled windows of 64 batches: a batch then holds sequences of similar
        # length and drops its all-padding columns (most shoppers' histories are short), while the
        # window keeps the order random; the batch order is shuffled again
        rng = np.random.default_rng(self.seed + 7919 * epoch + ctx.rank)
        window = size * 64
        batches = []
        for w in range(0, len(shard), window):
            part = shard[w:w + window]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i:i + size] for i in range(0, len(part), size)]
        for b in rng.permutation(len(batches)):
            rows = self.train[batches[b]]
            width = int(self.lengths[batches[b]].max())  # left-padded: drop the all-padding columns
            yield torch.from_numpy(rows[:, -max(width, 2):]).to(ctx.device)

    def loss(self, net: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        module = net.module if hasattr(net, "module") else net
        table = module.item_table()
        hidden = net(inputs, table)
        mask = targets > 0
        h, t = hidden[mask], targets[mask]
        cfg = self.cfg
        if cfg.loss == "ce":
            logits = (h @ table[1:].T)
            return F.cross_entropy(logits, t - 1, label_smoothing=cfg.label_smoothing)
        if cfg.loss == "inbatch":
            cand, label = torch.unique(t, return_inverse=True)
            logits = (h @ table[cand].T) - self.log_q.to(h.device)[cand]
            return F.cross_entropy(logits, label, label_smoothing=cfg.label_smoothing)
        negs = torch.randint(1, self.n_items + 1, (cfg.negatives,), device=h.device)
        pos = (h * table[t]).sum(-1, keepdim=True)
        neg = (h @ table[negs].T)
        neg = neg.masked_fill(negs.unsqueeze(0) == t.unsqueeze(1), float("-inf"))  # a negative that is the target
        if cfg.loss == "sampled":
            logits = torch.cat([pos, neg], dim=1)
            return F.cross_entropy(logits, torch.zeros(len(t), dtype=torch.long, device=h.device))
        # gBCE: -beta * log sigmoid(pos) - sum log(1 - sigmoid(neg)), averaged like BCE over the 1 + k logits
        alpha = cfg.negatives / max(self.n_items - 1, 1)
        beta = alpha * (cfg.gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
        per_row = beta * F.softplus(-pos.squeeze(1)) + F.softplus(neg).sum(1)  # softplus(-inf) = 0
        return per_row.mean() / (1 + cfg.negatives)

    def validate(self, module: torch.nn.Module, ctx: DistContext) -> dict[str, float]:
        if not self.has_validation:
            return {}
        idx = np.arange(ctx.rank, len(self.val_target), ctx.world_size)
        sums = torch.zeros(3, dtype=torch.float64)
        for start in range(0, len(idx), 1024):
            rows = idx[start:start + 1024]
            hist = torch.from_numpy(self.val_hist[rows]).to(ctx.device)
            scores = last_scores(module, hist)
            scores.scatter_(1, hist, float("-inf"))  # exclude history (and the padding column 0)
            target = torch.from_numpy(self.val_target[rows]).to(ctx.device)
            t_score = scores.gather(1, target.unsqueeze(1))
            rank = (scores > t_score).sum(1).double().cpu()
            hit = rank < 10
            sums += torch.tensor([float((hit / torch.log2(rank + 2)).sum()), float(hit.sum()), len(rows)],
                                 dtype=torch.float64)
        sums = ctx.all_sum(sums).cpu()
        n = max(float(sums[2]), 1.0)
        return {"NDCG@10": float(sums[0]) / n, "HR@10": float(sums[1]) / n}


__all__ = ["LOSSES", "SeqConfig", "SequenceTask", "last_scores", "left_pad"]
