"""The training loop every deep model shares.

A model supplies a `TrainTask` (its batches, its loss, its validation metric); the `Trainer` owns
everything else once: device choice, DDP under torchrun, AdamW with warmup + cosine decay, gradient
clipping, mixed precision where it pays, early stopping on validation NDCG@10, checkpoints and resume,
TensorBoard scalars and a progress bar with ETA. Keeping this in one place is what makes the models
comparable: they differ only in what they compute, never in how they are trained.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from aisle.train.distributed import DistContext
from aisle.train.memory import kept_freed_memory


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    schedule: str = "constant"  # "constant" or "cosine" (after warmup)
    grad_clip: float = 5.0
    patience: int = 10  # evaluations without improvement before stopping
    eval_every: int = 1  # epochs
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto: bf16 on CUDA that supports it, fp16 on other CUDA, off on CPU; or bf16/fp16/off
    checkpoint_dir: str | None = None
    resume: bool = False
    tensorboard_dir: str | None = None
    progress: bool = True
    # wall-clock budget: stops after the epoch that crosses it; with the cosine schedule (one process), the schedule
    # follows the whole epochs the budget fits at the pace so far, so a run cut by its budget still ends annealed
    max_seconds: float | None = None
    # the same budget in CPU seconds of this process (all its threads, `time.process_time`): how many epochs it
    # allows does not depend on what else runs on the machine, so a benchmark row means the same under load
    # (a wall-clock budget cut SASRec to 2-3 of its 20 epochs on a busy shared machine, RESULTS.md issue 24)
    max_cpu_seconds: float | None = None
    # stop after this many epochs of the `epochs`-long schedule: a refit on data with the hold-out put back follows
    # the trajectory of the fit that chose this count by early stopping and ends where that one peaked
    # (`SequentialRecommender.refit_overrides`)
    stop_after: int | None = None

    def __post_init__(self) -> None:
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError(f"stop_after must be at least 1, got {self.stop_after}")

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig(**{**asdict(self), **changes})


class TrainTask(Protocol):
    """What a model tells the trainer: how to batch, what to minimise, how to validate."""

    def batches(self, epoch: int, ctx: DistContext) -> Iterator[Any]:
        """This rank's shard of training batches for `epoch` (shuffled with a seed derived from epoch)."""
        ...

    def n_batches(self, ctx: DistContext) -> int: ...

    def loss(self, module: nn.Module, batch: Any) -> torch.Tensor: ...

    def validate(self, module: nn.Module, ctx: DistContext) -> dict[str, float]:
        """Metrics on held-out targets, averaged over ranks, incl. "NDCG@10"; {} when nothing is held out
        (the trainer then runs every epoch and keeps the last weights)."""
        ...


@dataclass
class TrainResult:
    best_metric: float = -math.inf
    best_epoch: int = -1
    epochs_run: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_amp(device: torch.device, amp: str) -> str:
    """'off', 'bf16' or 'fp16'. On CPU, bf16 autocast pays only with AMX: on an AVX2 EPYC it made a SASRec
    step 4x slower (measured, see benchmarks/RESULTS.md), so `auto` keeps fp32 on other CPUs."""
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise ValueError(f"amp must be auto, off, bf16 or fp16, not {amp!r}")
    if amp != "auto":
        return amp
    if device.type != "cuda":
        return "bf16" if torch.backends.cpu.get_cpu_capability().startswith("AMX") else "off"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


class Trainer:
    def __init__(self, config: TrainConfig, ctx: DistContext | None = None) -> None:
        self.config = config
        self.ctx = ctx or DistContext.from_env(config.device)

    def fit(self, module: nn.Module, task: TrainTask, *, metric: str = "NDCG@10",
            monitor: Callable[[int], dict[str, float]] | None = None) -> TrainResult:
        """Train `module` in place; on return it holds the weights of the best validation epoch.

        `monitor(epoch)`, if given, runs on rank 0 after each evaluation with the module in eval mode and
        returns extra metrics for that epoch's history row (logged only: early stopping follows `metric`).
        Tuning scripts use it to record a curve on targets the task does not hold out itself.
        """
        cfg, ctx = self.config, self.ctx
        seed_everything(cfg.seed)
        module.to(ctx.device)
        net: nn.Module = DistributedDataParallel(module) if ctx.enabled else module
        opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, task.n_batches(ctx))
        # the cosine's horizon in steps: a time budget (`max_seconds`, `max_cpu_seconds`) shortens it to the epochs
        # that fit, so a nightly refit cut by its budget still ends annealed instead of stopping at a high rate
        horizon = [steps_per_epoch * cfg.epochs]
        budgets = _budgets(cfg)
        # (one process only: ranks timing themselves could disagree on the learning rate and drift apart)
        budget_schedule = bool(budgets) and cfg.schedule == "cosine" and not ctx.enabled
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg, horizon[0]))
        amp = resolve_amp(ctx.device, cfg.amp)
        scaler = torch.amp.GradScaler(ctx.device.type) if amp == "fp16" else None  # fp16 needs loss scaling
        result = TrainResult()
        best_state: dict[str, torch.Tensor] | None = None
        start_epoch = 0
        ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        if ckpt_dir and cfg.resume and (ckpt_dir / "last.pt").exists():
            state = torch.load(ckpt_dir / "last.pt", map_location=ctx.device, weights_only=False)
            module.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start_epoch = state["epoch"] + 1
            result = TrainResult(**state["result"])
            best_state = state.get("best_model")
        writer = _tensorboard(cfg.tensorboard_dir) if ctx.is_main else None
        t0, base_seconds = time.perf_counter(), result.seconds
        starts = [clock() for _, clock in budgets]
        bad_evals = 0
        # on CPU, large per-step buffers come from the heap instead of fresh zeroed pages (`aisle.train.memory`)
        kept = kept_freed_memory() if ctx.device.type == "cpu" else contextlib.nullcontext()
        with kept, _progress_bar(cfg.progress and ctx.is_main, total=cfg.epochs * steps_per_epoch) as bar:
            if bar is not None:
                bar.update(completed=start_epoch * steps_per_epoch)
            for epoch in range(start_epoch, cfg.epochs):
                net.train()
                running, n = 0.0, 0
                for batch in task.batches(epoch, ctx):
                    with _autocast(ctx.device, amp):
                        loss = task.loss(net, batch)
                    opt.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(opt)
                        nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                        scaler.step(opt)
                        scaler.update()
                    else:
                        loss.backward()
                        nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                        opt.step()
                    running, n = running + float(loss.detach()), n + 1
                    if budget_schedule:
                        horizon[0] = min(_budget_horizon(horizon[0], cfg.epochs, limit, clock() - began,
                                                         (epoch - start_epoch) * steps_per_epoch + n, epoch,
                                                         start_epoch, steps_per_epoch)
                                         for (limit, clock), began in zip(budgets, starts, strict=True))
                    sched.step()
                    if bar is not None:
                        bar.advance(desc=f"epoch {epoch + 1} loss {running / n:.4f}")
                result.epochs_run = epoch + 1
                result.seconds = base_seconds + time.perf_counter() - t0
                row: dict[str, float] = {"epoch": epoch + 1, "loss": ctx.all_mean(running / max(n, 1)),
                                         "seconds": round(result.seconds, 1)}
                stop = False
                if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                    net.eval()
                    with torch.no_grad():
                        row.update(task.validate(module, ctx))
                        if monitor is not None and ctx.is_main:
                            row.update(monitor(epoch + 1))
                    if metric not in row:  # nothing held out: train every epoch, keep the last weights
                        result.best_epoch = epoch + 1
                    elif row[metric] > result.best_metric:
                        result.best_metric, result.best_epoch, bad_evals = row[metric], epoch + 1, 0
                        best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                    elif (epoch + 1) * steps_per_epoch > cfg.warmup_steps:
                        # patience counts only once the warm-up is over: while the learning rate still rises a
                        # flat epoch says nothing (the two-tower's old recipe stopped at epoch 6 of a 25-epoch
                        # warm-up, RESULTS.md issue 24, "rows24")
                        bad_evals += 1
                    stop = bad_evals >= cfg.patience
                over_time = bool(budgets) and (
                    any(clock() - began > limit for (limit, clock), began in zip(budgets, starts, strict=True))
                    or epoch + 1 >= horizon[0] // steps_per_epoch)
                row["lr"] = sched.get_last_lr()[0]
                result.history.append(row)
                if writer is not None:
                    for key, value in row.items():
                        if key not in ("epoch", "seconds", "lr"):
                            writer.add_scalar(key, value, epoch + 1)
                    writer.add_scalar("lr", sched.get_last_lr()[0], epoch + 1)
                if bar is not None:
                    bar.note(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                                if k not in ("epoch", "seconds"))
                             + f", {row['seconds']:.0f} s"
                             + (f" (best {metric} {result.best_metric:.4f} @ {result.best_epoch})"
                                if metric in row else ""))
                if ckpt_dir and ctx.is_main:
                    ckpt_dir.mkdir(parents=True, exist_ok=True)
                    torch.save({"model": module.state_dict(), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "epoch": epoch, "result": asdict(result),
                                "best_model": best_state, "config": asdict(cfg)}, ckpt_dir / "last.pt")
                # a refit told to stop where its holdout fit stopped: the schedule stays `epochs` long
                cut = cfg.stop_after is not None and epoch + 1 >= cfg.stop_after
                if ctx.broadcast_flag(stop or over_time or cut):
                    result.stopped_early = stop
                    break
        result.seconds = base_seconds + time.perf_counter() - t0  # a resumed run adds to the seconds it had
        if best_state is not None:
            module.load_state_dict(best_state)
        if writer is not None:
            writer.close()
        return result


def _budgets(cfg: TrainConfig) -> list[tuple[float, Callable[[], float]]]:
    """The configured budgets, each with the clock it is measured by (wall clock, this process's CPU time)."""
    return [(limit, clock) for limit, clock in ((cfg.max_seconds, time.perf_counter),
                                                 (cfg.max_cpu_seconds, time.process_time)) if limit is not None]


def _budget_horizon(horizon: int, epochs: int, budget: float, elapsed: float, steps_done: int, epoch: int,
                    start_epoch: int, steps_per_epoch: int) -> int:
    """The cosine's horizon (steps) once `steps_done` steps of this run took `elapsed` seconds of the budget's
    clock: the whole epochs that `budget` fits at the average pace so far (at least the current one, at most
    `epochs`), so the decay reaches zero at the end of the last epoch the budget allows. The first steps
    (start-up, a burst of load) are not a pace yet, and later ones may move the horizon either way as the
    average settles."""
    if steps_done < _PACE_STEPS and elapsed <= budget:
        return horizon
    fit = start_epoch + int(budget / (elapsed / steps_done) // steps_per_epoch)
    return steps_per_epoch * max(epoch + 1, min(epochs, fit))


_PACE_STEPS = 20


def _lr_factor(step: int, cfg: TrainConfig, total: int) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def _tensorboard(logdir: str | None) -> Any:
    if not logdir:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(logdir)


class _Bar:
    """A thin rich progress bar (one task) with an ETA and a line printed per epoch."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), transient=True)
        self.task = self.progress.add_task("training", total=total)

    def update(self, completed: int) -> None:
        self.progress.update(self.task, completed=completed)

    def advance(self, desc: str) -> None:
        self.progress.update(self.task, advance=1, description=desc)

    def note(self, text: str) -> None:
        self.progress.console.print(text)


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[_Bar | None]:
    if not enabled:
        yield None
        return
    bar = _Bar(total)
    with bar.progress:
        yield bar
