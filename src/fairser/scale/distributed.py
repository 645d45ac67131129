"""Group losses over the *global* batch when training runs on several processes (DDP).

MinMaxGAP's max over domains and Group DRO's weights are non-linear in the group losses, so averaging
per-process objectives (what plain DDP does) optimises a different objective from the one of the global
batch, and a process whose shard lacks a gender of some language would see no gap at all. Each process
therefore gathers every process's per-sample losses (with gradient), logits, embeddings, labels, domains
and genders, builds the global :class:`~fairser.objectives.GroupBatch` and evaluates the objective on it
(the same value on every process).

Gradient scaling: the backward of :func:`all_gather_with_grad` sums, over processes, the gradient each
process's (identical) objective sends to a shard, so process ``r``'s per-sample losses receive
``W * dL/dl_r``; DDP then averages parameter gradients over the ``W`` processes, which leaves exactly
``dL/dtheta`` of the global objective (``tests/test_ddp.py`` checks this against a single process). This is
the all-gather of SimCLR/CLIP-style global-batch losses (as ``torch.distributed.nn.functional.all_gather``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from fairser.objectives import GroupBatch

__all__ = ["all_gather_variable", "all_gather_with_grad", "gather_group_batch", "world"]

_FIELDS = ("losses", "domain", "sensitive", "logits", "y", "index", "embedding")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGather(torch.autograd.Function):
    """All-gather of equally shaped tensors, stacked (W, ...); backward: all-reduce (sum), own slice."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        ctx.rank = dist.get_rank()
        out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(out, tensor.contiguous())
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Stack every process's ``tensor`` (all of one shape) into (W, ...), differentiably (see module notes)."""
    if world()[1] == 1:
        return tensor.unsqueeze(0)
    return _AllGather.apply(tensor)


def _sizes(n: int, device: torch.device) -> list[int]:
    local = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.zeros_like(local) for _ in range(world()[1])]
    dist.all_gather(out, local)
    return [int(t.item()) for t in out]


def _gather_rows(tensor: Tensor, sizes: list[int], *, grad: bool) -> Tensor:
    """Concatenate every process's rows (first dimensions may differ), in process order."""
    m = max(sizes)
    dtype = tensor.dtype
    # gather floating tensors in float32 (half types are not supported by every backend, e.g. gloo)
    work = tensor.float() if tensor.is_floating_point() else tensor
    if work.shape[0] < m:
        pad = work.new_zeros((m - work.shape[0], *work.shape[1:]))
        work = torch.cat([work, pad])
    if grad and work.requires_grad:
        stacked = _AllGather.apply(work)
    else:
        parts = [torch.empty_like(work) for _ in sizes]
        dist.all_gather(parts, work.detach().contiguous())
        stacked = torch.stack(parts)
    out = torch.cat([stacked[r, :k] for r, k in enumerate(sizes)])
    return out.to(dtype) if out.dtype != dtype else out


def all_gather_variable(tensor: Tensor) -> Tensor:
    """Concatenate every process's ``tensor`` along dim 0 (row counts may differ), without gradient."""
    if world()[1] == 1:
        return tensor
    return _gather_rows(tensor, _sizes(tensor.shape[0], tensor.device), grad=False)


def gather_group_batch(batch: GroupBatch) -> GroupBatch:
    """The global :class:`GroupBatch`: every process's rows concatenated in process order.

    ``losses``, ``logits`` and ``embedding`` keep their gradient (to the process that computed them); the
    integer fields are plain copies. With one process the batch is returned unchanged. Every process must
    call this the same number of times, with the same fields set.
    """
    if world()[1] == 1:
        return batch
    sizes = _sizes(batch.losses.shape[0], batch.losses.device)
    gathered = {}
    for name in _FIELDS:
        value = getattr(batch, name)
        gathered[name] = None if value is None else _gather_rows(value, sizes, grad=True)
    return GroupBatch(**gathered, n_values=batch.n_values)
