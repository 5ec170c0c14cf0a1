"""Knowledge distillation: a smaller sequential model trained to match a teacher's full-catalog logits.

The student is an ordinary model of the teacher's class (fewer blocks and dimensions), trained by the shared
`Trainer` on the teacher's own task (the same batches, every position a target), with the loss

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, next item)

(Hinton et al. 2015): the teacher's soft distribution over all items says which other items were plausible
next, which a one-hot target does not, and it is what lets a student with a quarter of the compute keep most
of the teacher's accuracy. The teacher runs in eval mode without gradients; its logits are computed batch by
batch, so nothing of size (positions x items) outlives a step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aisle.index.retrieval import exact_top_k
from aisle.models.base import QueryBatch, TrainData
from aisle.models.seqtask import SequenceTask
from aisle.models.sequential import SequentialRecommender
from aisle.train.distributed import DistContext
from aisle.train.trainer import Trainer


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 2.0
    alpha: float = 0.7  # weight of the teacher's soft targets; 1 - alpha on the true next item

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


class DistillTask:
    """The teacher's `SequenceTask` with the distillation loss (batches and validation are the task's own)."""

    def __init__(self, base: SequenceTask, teacher: nn.Module, cfg: DistillConfig) -> None:
        self.base, self.teacher, self.cfg = base, teacher, cfg

    def batches(self, epoch: int, ctx: DistContext) -> Iterator[torch.Tensor]:
        return self.base.batches(epoch, ctx)

    def n_batches(self, ctx: DistContext) -> int:
        return self.base.n_batches(ctx)

    def validate(self, module: nn.Module, ctx: DistContext) -> dict[str, float]:
        return self.base.validate(module, ctx)

    def loss(self, net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        module = net.module if hasattr(net, "module") else net
        mask = targets > 0
        with torch.no_grad():
            self.teacher.to(batch.device)
            t_table = self.teacher.item_table()
            t_logits = self.teacher(inputs, t_table)[mask] @ t_table[1:].T
        table = module.item_table()
        logits = net(inputs, table)[mask] @ table[1:].T
        t = self.cfg.temperature
        soft = F.kl_div(F.log_softmax(logits / t, dim=-1), F.log_softmax(t_logits / t, dim=-1), log_target=True,
                        reduction="batchmean") * t * t
        hard = F.cross_entropy(logits, targets[mask] - 1)
        return self.cfg.alpha * soft + (1.0 - self.cfg.alpha) * hard


def distill(teacher: SequentialRecommender, data: TrainData, *, cfg: DistillConfig | None = None,
            **student_params: Any) -> SequentialRecommender:
    """A student of the teacher's class, `student_params` overriding the teacher's configuration (e.g.
    `dim=32, layers=1`), trained on `data` against the teacher's logits with the teacher's training settings."""
    if teacher.net is None:
        raise RuntimeError(f"{teacher.name} (the teacher) is not fitted")
    if "max_len" in student_params and student_params["max_len"] != teacher.seq.max_len:
        raise ValueError("the student must read the teacher's max_len (the teacher's logits are per position)")
    cls = type(teacher)
    base = {**{k: getattr(teacher.seq, k) for k in teacher.seq.__dataclass_fields__},
            **{k: getattr(teacher.train_cfg, k) for k in teacher.train_cfg.__dataclass_fields__}}
    student = cls(**{**base, **student_params})
    if student.seq.loss != "ce":
        raise ValueError("distillation matches full-catalog logits: the student's loss must be 'ce'")
    net = student.prepare(data)
    task = SequenceTask(data.sequences(), student.seq, student.n_items, student.train_cfg.seed)
    was_training = teacher.net.training
    teacher.net.eval()
    try:
        student.result = Trainer(student.train_cfg).fit(net, DistillTask(task, teacher.net, cfg or DistillConfig()))
    finally:
        teacher.net.train(was_training)
    net.eval()
    return student


def parameter_count(model: SequentialRecommender, *, nonzero: bool = False) -> int:
    """Parameters of the model's network (with `nonzero`, only those not pruned to exactly 0)."""
    if model.net is None:
        raise RuntimeError(f"{model.name} is not fitted")
    params = [p.detach() for p in model.net.parameters()]
    return int(sum(int((p != 0).sum()) if nonzero else p.numel() for p in params))


def teacher_agreement(teacher: SequentialRecommender, student: SequentialRecommender, histories: list[np.ndarray],
                      k: int = 10) -> float:
    """Mean overlap of the two models' top-k lists (history items excluded) over `histories`."""
    hist = [np.asarray(h, np.int64) for h in histories]
    batch = QueryBatch.of_histories(hist)
    a = exact_top_k(teacher.item_vectors(), teacher.user_vectors(batch), k, exclude=hist)
    b = exact_top_k(student.item_vectors(), student.user_vectors(batch), k, exclude=hist)
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(a, b, strict=True)]))


__all__ = ["DistillConfig", "DistillTask", "distill", "parameter_count", "teacher_agreement"]
