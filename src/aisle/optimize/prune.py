"""Global magnitude pruning of a sequential model: the smallest weights, across all weight matrices, set to 0.

Pruned are the embedding tables (item ids, side features, positions) and every linear / attention projection
matrix, ranked together by |w| (`torch.nn.utils.prune.global_unstructured` with L1 magnitude) so that layers
with many small weights give up more of them; biases and LayerNorm parameters are kept. The mask is then made
permanent: the result is an ordinary model with zeros in it. Unstructured zeros shrink the model only when
stored sparsely (`sparse_bytes`) and do not speed up dense CPU kernels; what they cost in accuracy is what
`benchmarks/optimize.py` measures.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune as tprune

from aisle.models.sequential import SequentialRecommender


def prunable(net: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, parameter name) of every weight matrix: embeddings, linear layers, attention in-projections."""
    out: list[tuple[nn.Module, str]] = []
    for module in net.modules():
        if isinstance(module, nn.Embedding | nn.Linear):
            out.append((module, "weight"))
        elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            out.append((module, "in_proj_weight"))
    return out


def magnitude_prune(model: SequentialRecommender, amount: float) -> SequentialRecommender:
    """A copy of `model` with the fraction `amount` of its prunable weights (smallest |w| overall) set to 0."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    if model.net is None:
        raise RuntimeError(f"{model.name} is not fitted")
    pruned = copy.copy(model)
    pruned.net = copy.deepcopy(model.net)
    params = prunable(pruned.net)
    if amount > 0:
        tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=amount)
        for module, name in params:
            tprune.remove(module, name)
    pruned.net.eval()
    return pruned


def sparsity(model: SequentialRecommender) -> float:
    """Share of the prunable weights that are exactly 0."""
    if model.net is None:
        raise RuntimeError(f"{model.name} is not fitted")
    weights = [getattr(m, n).detach() for m, n in prunable(model.net)]
    total = sum(w.numel() for w in weights)
    return float(sum(int((w == 0).sum()) for w in weights) / max(total, 1))


def sparse_bytes(model: SequentialRecommender) -> int:
    """Bytes of the weights stored as CSR: fp32 nonzeros + int32 column indices + int32 row pointers for every
    matrix, other parameters and buffers dense."""
    if model.net is None:
        raise RuntimeError(f"{model.name} is not fitted")
    matrices = {id(getattr(m, n)) for m, n in prunable(model.net)}
    total = 0
    for p in [*model.net.parameters(), *model.net.buffers()]:
        t = p.detach()
        if id(p) in matrices and t.dim() == 2:
            total += int((t != 0).sum()) * 8 + (t.shape[0] + 1) * 4
        else:
            total += t.numel() * t.element_size()
    return total


def dense_bytes(model: SequentialRecommender) -> int:
    """Bytes of every parameter and buffer stored densely (what `save` writes, give or take its header)."""
    if model.net is None:
        raise RuntimeError(f"{model.name} is not fitted")
    tensors: list[torch.Tensor] = [*model.net.parameters(), *model.net.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors))


__all__ = ["dense_bytes", "magnitude_prune", "prunable", "sparse_bytes", "sparsity"]
