"""Distributed training context: one process, or one of N under `torchrun` (DDP).

The same command runs both ways: `torchrun --nproc_per_node=N aisle train ...` sets RANK, WORLD_SIZE
and LOCAL_RANK, and `DistContext.from_env()` turns them into a process group (gloo on CPU, nccl on
CUDA). Only rank 0 writes checkpoints, logs and progress bars; every rank trains on its own shard.
Multi-node runs add `--nnodes`, `--node_rank` and a rendezvous endpoint (see the README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU; under DDP each rank takes its LOCAL_RANK's GPU."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> DistContext:
        """Join the process group torchrun describes in the environment; a plain run is a group of one."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        dev = pick_device(device)
        if world <= 1:
            return cls(0, 1, dev)
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend=backend)
        return cls(dist.get_rank(), dist.get_world_size(), dev)

    def all_mean(self, value: float) -> float:
        """Average a scalar over ranks (each rank evaluates its shard of validation users)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return values
        t = values.clone().to(self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's decision (e.g. stop early) for every rank, so all leave the loop together."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(t, src=0)
        return bool(t.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
