"""Sequential recommenders (SASRec, GRU4Rec) behind the common Recommender protocol.

Training follows the leave-one-out protocol inside `fit`: each user's last item is held out as the
early-stopping target, and the rest trains next-item prediction at every position with a full
softmax cross-entropy over the catalog (the loss that makes SASRec competitive; a sampled softmax
replaces it for catalogs too large to score whole). When `fit` is given the test-time history
(train + validation targets), the held-out item is exactly the validation target, as in the
published protocol. `score` encodes any history, so a brand-new session is served without refitting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file, save_file

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.models.seqnets import NETS
from aisle.train.distributed import DistContext
from aisle.train.trainer import TrainConfig, Trainer, TrainResult


@dataclass(frozen=True)
class SeqConfig:
    dim: int = 64
    layers: int = 2
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.5
    batch_size: int = 256
    loss: str = "ce"  # "ce" (full softmax) or "sampled" (sampled softmax with `negatives` uniform negatives)
    negatives: int = 256
    label_smoothing: float = 0.0
    use_features: bool = True


def _left_pad(seqs: list[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[i, length - len(s):] = s
    return out


class SequenceTask:
    """Batches of (input, target) sequences shifted by one; validation on each user's held-out last item."""

    def __init__(self, sequences: list[np.ndarray], cfg: SeqConfig, n_items: int, seed: int) -> None:
        self.cfg, self.n_items, self.seed = cfg, n_items, seed
        train, val_hist, val_target = [], [], []
        for s in sequences:
            s = s + 1  # model ids: 0 is padding
            if len(s) >= 3:
                val_hist.append(s[:-1])
                val_target.append(int(s[-1]))
                s = s[:-1]
            if len(s) >= 2:
                train.append(s)
        length = cfg.max_len + 1
        self.train = _left_pad(train, length)
        self.lengths = (self.train > 0).sum(1)
        self.val_hist = _left_pad(val_hist, cfg.max_len)
        self.val_target = np.asarray(val_target, dtype=np.int64)

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
        if self.cfg.loss == "ce":
            logits = h @ table[1:].T
            return F.cross_entropy(logits, t - 1, label_smoothing=self.cfg.label_smoothing)
        negs = torch.randint(1, self.n_items + 1, (self.cfg.negatives,), device=h.device)
        cand = torch.cat([t.unsqueeze(1), negs.unsqueeze(0).expand(len(t), -1)], dim=1)
        logits = torch.einsum("pd,pkd->pk", h, table[cand])
        logits[:, 1:] = logits[:, 1:].masked_fill(cand[:, 1:] == t.unsqueeze(1), float("-inf"))
        return F.cross_entropy(logits, torch.zeros(len(t), dtype=torch.long, device=h.device))

    def validate(self, module: torch.nn.Module, ctx: DistContext) -> dict[str, float]:
        idx = np.arange(ctx.rank, len(self.val_target), ctx.world_size)
        sums = torch.zeros(3, dtype=torch.float64)
        for start in range(0, len(idx), 1024):
            rows = idx[start:start + 1024]
            hist = torch.from_numpy(self.val_hist[rows]).to(ctx.device)
            scores = _last_scores(module, hist)
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


def _last_scores(module: torch.nn.Module, hist: torch.Tensor) -> torch.Tensor:
    """Scores over model ids (column 0 = padding, -inf) from the last position of each history."""
    table = module.item_table()
    h = module(hist, table)[:, -1]
    scores = h @ table.T
    scores[:, 0] = float("-inf")
    return scores


class SequentialRecommender:
    """Shared fit/score/save/load for the sequence encoders in `seqnets.NETS`."""

    name: ClassVar[str] = "sequential"
    net_name: ClassVar[str] = "sasrec"
    search_space: ClassVar[dict[str, list[Any]]] = {}
    default_seq: ClassVar[SeqConfig] = SeqConfig()
    default_train: ClassVar[TrainConfig] = TrainConfig()

    def __init__(self, seq: SeqConfig | None = None, train: TrainConfig | None = None, **overrides: Any) -> None:
        seq_fields = set(SeqConfig.__dataclass_fields__)
        self.seq = SeqConfig(**{**asdict(seq or self.default_seq),
                                **{k: v for k, v in overrides.items() if k in seq_fields}})
        self.train_cfg = (train or self.default_train).replace(
            **{k: v for k, v in overrides.items() if k not in seq_fields})
        self.net: torch.nn.Module | None = None
        self.n_items = 0
        self.features: np.ndarray | None = None
        self.result: TrainResult | None = None

    # ---- fitting --------------------------------------------------------------------------------------

    def fit(self, data: TrainData) -> Self:
        self.n_items = data.n_items
        self.features = _item_features(data) if self.seq.use_features else None
        self.net = self._build()
        task = SequenceTask(data.sequences(), self.seq, self.n_items, self.train_cfg.seed)
        self.result = Trainer(self.train_cfg).fit(self.net, task)
        self.net.eval()
        return self

    def _build(self) -> torch.nn.Module:
        cls = NETS[self.net_name]
        kwargs: dict[str, Any] = {"dim": self.seq.dim, "layers": self.seq.layers, "max_len": self.seq.max_len,
                                  "dropout": self.seq.dropout}
        if self.net_name == "sasrec":
            kwargs["heads"] = self.seq.heads
        if self.features is not None:
            kwargs["features"] = torch.from_numpy(self.features)
            kwargs["n_features"] = int(self.features.max())
        torch.manual_seed(self.train_cfg.seed)
        return cls(self.n_items, **kwargs)

    # ---- scoring --------------------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, batch: QueryBatch) -> np.ndarray:
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted")
        device = next(self.net.parameters()).device
        hists = [h[h >= 0] + 1 for h in batch.histories]
        out = np.empty((len(batch), self.n_items), dtype=np.float32)
        for start in range(0, len(hists), 1024):
            chunk = torch.from_numpy(_left_pad(hists[start:start + 1024], self.seq.max_len)).to(device)
            out[start:start + len(chunk)] = _last_scores(self.net, chunk)[:, 1:].float().cpu().numpy()
        return out

    # ---- persistence ----------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted")
        path = Path(path)
        cfg = {"seq": asdict(self.seq), "train": asdict(self.train_cfg), "n_items": self.n_items,
               "result": asdict(self.result) if self.result else None}
        write_config(path, self.name, cfg)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path / "weights.safetensors"))

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        cfg = read_config(path, cls.name)
        model = cls(SeqConfig(**cfg["seq"]), TrainConfig(**cfg["train"]))
        model.n_items = cfg["n_items"]
        state = load_file(str(path / "weights.safetensors"))
        model.features = state["items.features"].numpy() if "items.features" in state else None
        model.net = model._build()
        model.net.load_state_dict(state)
        model.net.eval()
        return model


def _item_features(data: TrainData) -> np.ndarray | None:
    """(n_items + 1, F) side-feature ids from catalog attributes (`attribute_ids`, brand, category path)."""
    if data.catalog is None:
        return None
    vocab: dict[str, int] = {}
    rows: list[list[int]] = [[]]
    for attrs, brand, cats in data.catalog.select("attributes", "brand", "categories").iter_rows():
        keys = []
        if attrs:
            ids = json.loads(attrs).get("attribute_ids")
            if isinstance(ids, list):
                keys += [f"a:{a}" for a in ids]
        if brand:
            keys.append(f"b:{brand}")
        keys += [f"c:{'/'.join(cats[: i + 1])}" for i in range(len(cats or []))]
        rows.append([vocab.setdefault(k, len(vocab) + 1) for k in keys])
    if not vocab:
        return None
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class SASRec(SequentialRecommender):
    name = "sasrec"
    net_name = "sasrec"
    search_space: ClassVar[dict[str, list[Any]]] = {"dropout": [0.3, 0.5], "dim": [64, 128]}


class GRU4Rec(SequentialRecommender):
    name = "gru4rec"
    net_name = "gru4rec"
    default_seq = SeqConfig(layers=1, dropout=0.3)
    search_space: ClassVar[dict[str, list[Any]]] = {"dropout": [0.2, 0.4], "dim": [64, 128]}
