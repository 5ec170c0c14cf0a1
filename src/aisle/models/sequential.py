"""Deep sequential recommenders (SASRec, GRU4Rec, and the base of the two-tower model) behind the Recommender protocol.

A model here is a sequence encoder (`seqnets`, `twotower`) plus the shared `SequenceTask` (next-item prediction
at every position; full-softmax CE by default, sampled softmax / gBCE / in-batch negatives as options) and the
shared `Trainer`. With `holdout` on, each user's last item is held out inside `fit` as the early-stopping target;
when `fit` is given the test-time history (train + validation targets), that item is exactly the validation
target, as in the published protocol. With `holdout` off the model trains a fixed number of epochs on every
item (the number of epochs is then a hyper-parameter chosen on the validation targets, see
benchmarks/deep_tune.py). `score` encodes any history, so a brand-new session is served without refitting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.models.seqnets import GRU4RecNet, SASRecNet
from aisle.models.seqtask import SeqConfig, SequenceTask, last_scores, left_pad
from aisle.train.trainer import TrainConfig, Trainer, TrainResult


class SequentialRecommender:
    """Shared fit/score/save/load for a sequence encoder `net_class` trained by the shared Trainer.

    Keyword arguments override fields of `SeqConfig` (model and loss) or `TrainConfig` (optimisation); an
    unknown name is an error. `seed` seeds the initialisation, the batch order and the dropout masks.
    """

    name: ClassVar[str] = "sequential"
    net_class: ClassVar[type[torch.nn.Module]] = SASRecNet
    search_space: ClassVar[dict[str, list[Any]]] = {}
    default_seq: ClassVar[SeqConfig] = SeqConfig()
    default_train: ClassVar[TrainConfig] = TrainConfig()

    def __init__(self, seq: SeqConfig | None = None, train: TrainConfig | None = None, *, seed: int | None = None,
                 **overrides: Any) -> None:
        seq_fields = set(SeqConfig.__dataclass_fields__)
        train_fields = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(set(overrides) - self.parameter_names())
        if unknown:
            raise TypeError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(seq_fields | train_fields))}")
        self.seq = SeqConfig(**{**asdict(seq or self.default_seq),
                                **{k: v for k, v in overrides.items() if k in seq_fields}})
        train_over = {k: v for k, v in overrides.items() if k in train_fields}
        if seed is not None:
            train_over["seed"] = seed
        self.train_cfg = (train or self.default_train).replace(**train_over)
        self.net: torch.nn.Module | None = None
        self.n_items = 0
        self.features: np.ndarray | None = None
        self.result: TrainResult | None = None

    @classmethod
    def parameter_names(cls) -> frozenset[str]:
        """Every keyword the constructor takes: `seed` and the fields of SeqConfig and TrainConfig (what
        `**overrides` accepts), so a config file can be checked before anything is fitted."""
        return frozenset({"seed", *SeqConfig.__dataclass_fields__, *TrainConfig.__dataclass_fields__})

    # ---- fitting --------------------------------------------------------------------------------------

    def fit(self, data: TrainData, *, monitor: Callable[[int], dict[str, float]] | None = None) -> Self:
        """Train on `data`; `monitor(epoch)` adds metrics to each epoch's history (see `Trainer.fit`)."""
        net = self.prepare(data)
        task = SequenceTask(data.sequences(), self.seq, self.n_items, self.train_cfg.seed)
        self.result = Trainer(self.train_cfg).fit(net, task, monitor=monitor)
        net.eval()
        return self

    def refit_overrides(self) -> dict[str, Any]:
        """What a refit on the same events plus each user's newest one should change, after this fit: when the
        hold-out chose the epochs (early stopping), train on everything (`holdout` off) and stop after the best
        epoch of the same schedule. The pipeline refits its sources so; without it a refit would hold the newest
        event out again, and the served model would never train on it. Empty when nothing was held out."""
        if not self.seq.holdout or self.result is None or not math.isfinite(self.result.best_metric):
            return {}
        return {"holdout": False, "stop_after": self.result.best_epoch}

    def prepare(self, data: TrainData) -> torch.nn.Module:
        """The untrained network for `data`'s catalog, installed as `self.net` (`fit` trains it; other training
        tasks, such as distillation in `aisle.optimize`, train it with their own loss)."""
        self.n_items = data.n_items
        self.features = item_features(data) if self.seq.use_features else None
        self.net = self._build()
        return self.net

    def _net_kwargs(self) -> dict[str, Any]:
        return {"dim": self.seq.dim, "layers": self.seq.layers, "max_len": self.seq.max_len,
                "dropout": self.seq.dropout}

    def _build(self) -> torch.nn.Module:
        kwargs = self._net_kwargs()
        if self.features is not None:
            kwargs["features"] = torch.from_numpy(self.features)
            kwargs["n_features"] = int(self.features.max())
        torch.manual_seed(self.train_cfg.seed)
        return self.net_class(self.n_items, **kwargs)

    # ---- scoring --------------------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, batch: QueryBatch) -> np.ndarray:
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted")
        device = next(self.net.parameters()).device
        hists = [h[(h >= 0) & (h < self.n_items)] + 1 for h in batch.histories]
        out = np.empty((len(batch), self.n_items), dtype=np.float32)
        for start in range(0, len(hists), 1024):
            chunk = torch.from_numpy(left_pad(hists[start:start + 1024], self.seq.max_len)).to(device)
            out[start:start + len(chunk)] = last_scores(self.net, chunk)[:, 1:].float().cpu().numpy()
        return out

    # ---- vectors (score == user_vectors @ item_vectors.T; what ANN retrieval and aisle.optimize use) ----

    @torch.no_grad()
    def user_vectors(self, batch: QueryBatch) -> np.ndarray:
        """(len(batch), dim) float32: the encoded history (the last position's hidden state)."""
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted")
        device = next(self.net.parameters()).device
        table = self.net.item_table()
        hists = [h[(h >= 0) & (h < self.n_items)] + 1 for h in batch.histories]
        out = np.empty((len(batch), table.shape[1]), dtype=np.float32)
        for start in range(0, len(hists), 1024):
            chunk = torch.from_numpy(left_pad(hists[start:start + 1024], self.seq.max_len)).to(device)
            out[start:start + len(chunk)] = self.net(chunk, table)[:, -1].float().cpu().numpy()
        return out

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32: the output item table, row i = item index i."""
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted")
        return self.net.item_table()[1:].float().cpu().numpy()

    # ---- persistence ----------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted")
        path = Path(path)
        cfg = {"seq": asdict(self.seq), "train": asdict(self.train_cfg), "n_items": self.n_items,
               "result": asdict(self.result) if self.result else None}
        write_config(path, self.name, cfg)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(path / "weights.safetensors"))

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
        if cfg.get("result"):
            model.result = TrainResult(**cfg["result"])
        return model


def item_features(data: TrainData) -> np.ndarray | None:
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
    """SASRec (Kang & McAuley 2018) with full-softmax CE; defaults chosen on Amazon Beauty's validation targets.

    The defaults train 20 epochs on every item (no hold-out: the validation target is training data when the
    runner refits on train + validation) with a learning rate of 3e-3 decayed by a cosine; on Beauty's
    validation targets 20 epochs reached HR@10 0.1010 / NDCG@10 0.0601 against 0.0863 / 0.0512 for 8
    (benchmarks/RESULTS.md lists the trials).
    """

    name = "sasrec"
    net_class = SASRecNet
    default_seq = SeqConfig(dropout=0.5, batch_size=128, holdout=False)
    default_train = TrainConfig(epochs=20, lr=3e-3, warmup_steps=50, schedule="cosine")

    def _net_kwargs(self) -> dict[str, Any]:
        return {**super()._net_kwargs(), "heads": self.seq.heads}


class GRU4Rec(SequentialRecommender):
    """GRU4Rec (Hidasi et al. 2016) trained, like SASRec here, with full-softmax CE over the catalog."""

    name = "gru4rec"
    net_class = GRU4RecNet
    default_seq = SeqConfig(layers=1, dropout=0.3)
    # not tuned on a benchmark yet: a bounded budget that early-stops on the held-out last items
    default_train = TrainConfig(epochs=20, lr=3e-3, warmup_steps=50, schedule="cosine", patience=3)


__all__ = ["GRU4Rec", "SASRec", "SeqConfig", "SequentialRecommender", "item_features"]
