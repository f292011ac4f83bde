"""Multi-process runs (``torchrun``): where this process stands, joining the group, and the
collectives that keep state identical on every rank.

Why one module: "is this distributed?" has one answer (``dist_info``), read by the device choice,
both training loops and every collective. Every collective is a no-op (returns its input
untouched, issues none) in a one-process world, so single-process runs compute exactly what they
computed before DDP support; none reads a device value back to the host (on GPU the collectives
are queued on the stream like any kernel). Every rank must call a collective, and a loop joins the
group (``init_distributed``) before its first one.

Both loops go through the same three doors: ``distribute_model`` (SyncBN on GPU, DDP whose forward
does not broadcast buffers), ``optimizer_step`` (zero-grad, backward, gradient averaging, step,
buffer sync: the buffers are made equal after each step instead of at each forward) and
``save_collectively`` (every rank's RNG state gathered, rank 0 writes, all wait), with
``restore_rng`` and ``check_same_on_all_ranks`` on resume. What ``adapt`` adds: ``stvm.adapt.dist``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from stvm.errors import StvmError
from stvm.training import rng_state, save_state, set_rng_state


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """This process's rank, the world size and its local rank: the process group's once joined
    (``init_distributed``), torchrun's environment before (so the device can be chosen first);
    1 process when not launched by torchrun."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), local)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group (nccl on GPU, gloo on CPU) when WORLD_SIZE > 1."""
    info = dist_info()
    if info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
    return info


def world_size() -> int:
    """Processes in the job (1 when not distributed): ``dist_info``'s answer."""
    return dist_info().world_size


def all_gather_cat(x: Tensor) -> Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order (shapes must agree across ranks,
    which holds here: each rank has ``batch_size`` crops of the same size)."""
    n = world_size()
    if n == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(n)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over ranks (a new tensor; ``x`` itself when not distributed)."""
    n = world_size()
    if n == 1:
        return x
    out = x.detach().clone()
    dist.all_reduce(out)
    return out / n


def _all_reduce_flat_(tensors: list[Tensor], average: bool) -> None:
    """Sum (or average) a list of same-dtype tensors over ranks in place, as one flat collective."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    if average:
        flat /= world_size()
    for t, v in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        t.copy_(v.view_as(t))


@torch.no_grad()
def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average ``.grad`` over ranks (what DDP does for the student; here for M and the proxies) so
    every rank's optimiser takes the same step. A missing gradient counts as zero."""
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        _all_reduce_flat_(grads, average=True)


@torch.no_grad()
def sync_buffers(module: nn.Module, average: bool) -> None:
    """Make the floating-point buffers (BatchNorm running statistics) equal on every rank.

    ``average=True`` (CPU, per-rank BN): the mean over ranks, i.e. the running mean of the global
    batch. ``average=False`` (GPU, SyncBN already made them equal): rank 0's values, which only
    removes any last-bit difference. Integer buffers (``num_batches_tracked``) agree by construction.
    """
    if world_size() == 1:
        return
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if average:
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for b in bufs:
            by_dtype.setdefault(b.dtype, []).append(b)
        for group in by_dtype.values():
            _all_reduce_flat_(group, average=True)
    else:
        for b in bufs:
            dist.broadcast(b, 0)


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (one-off, at start)."""
    if world_size() == 1:
        return
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, 0)


def global_count_weight(count: Tensor) -> Tensor:
    """``count * world / sum over ranks of count``: scaling a per-rank mean loss by it turns the
    gradient average over ranks into the mean over all ranks' samples (1 when not distributed)."""
    n = world_size()
    if n == 1:
        return torch.ones((), device=count.device)
    total = count.detach().float().clone()
    dist.all_reduce(total)
    return count.detach().float() * n / total.clamp_min(1.0)


def first_bad_over_ranks(first_bad: Tensor) -> Tensor:
    """Earliest non-finite iteration over ranks (-1 when none), so all ranks stop together."""
    if world_size() == 1:
        return first_bad
    big = torch.iinfo(first_bad.dtype).max
    t = torch.where(first_bad < 0, torch.full_like(first_bad, big), first_bad).clone()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return torch.where(t == big, torch.full_like(t, -1), t)


def gather_rng_states() -> list[dict[str, Any]] | None:
    """Every rank's global RNG states (``training.rng_state``) in rank order; None when not
    distributed. Collective: all ranks must call it."""
    n = world_size()
    if n == 1:
        return None
    out: list[Any] = [None] * n
    dist.all_gather_object(out, rng_state())
    return out


def check_same_on_all_ranks(value: int, what: str, stage: str) -> None:
    """Raise the same ``StvmError`` on every rank when ranks disagree about ``value`` (e.g. one rank
    did not see the checkpoint the others resume from: no shared file system)."""
    if world_size() == 1:
        return
    t = torch.tensor([value, -value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    hi, lo = int(t[0]), -int(t[1])
    if hi != lo:
        raise StvmError(None, f"{stage}: ranks disagree on {what} ({lo} vs {hi}); put the output folder on a "
                              "file system every node sees")


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if world_size() > 1:
        dist.barrier()


def sync_bn(module: nn.Module, dev: torch.device) -> nn.Module:
    """``module`` with SyncBN on GPU under torchrun (a per-rank batch of 2 is too small for BN
    statistics; torch has no CPU SyncBN, where ``sync_buffers`` averages them after each step)."""
    if world_size() == 1 or dev.type != "cuda":
        return module
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)


def ddp_forward(module: nn.Module) -> nn.Module:
    """``module``'s DDP wrapper (gradients averaged over ranks in backward; buffers synced once at
    construction, rank 0's, then by ``optimizer_step`` after each step, not per forward); the
    module itself in one process."""
    if world_size() == 1:
        return module
    no_fwd_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel).parameters else {"broadcast_buffers": False})
    return DistributedDataParallel(module, **no_fwd_sync)


def distribute_model(model: nn.Module, dev: torch.device) -> tuple[nn.Module, nn.Module]:
    """``(model, forward)``: the model as it trains under torchrun (``sync_bn``) and the callable
    its training forward goes through (``ddp_forward``); ``(model, model)`` in one process."""
    model = sync_bn(model, dev)
    return model, ddp_forward(model)


def optimizer_step(opt: torch.optim.Optimizer, loss: Tensor, *, average: Iterable[nn.Parameter] = (),
                   buffers: nn.Module | None = None) -> None:
    """One optimiser step on ``loss``, equal on every rank: zero-grad, backward, the gradients of
    ``average`` averaged over ranks (those no DDP wrapper averages), step, then ``buffers``' BN
    statistics synced (averaged on CPU, rank 0's on GPU). In one process: zero-grad, backward, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(average)
    opt.step()
    if buffers is not None:
        sync_buffers(buffers, average=loss.device.type != "cuda")


def save_collectively(path: Path, weights: dict[str, Any], payload: dict[str, Any], it: int, wall: float,
                      run_id: str) -> None:
    """A resumable checkpoint of a multi-process run (``training.save_state``): rank 0 writes it, with
    every rank's RNG state under DDP (``rng_ranks``); every rank returns once it is on disk
    (collective: every rank calls it)."""
    rngs = gather_rng_states()
    if dist_info().is_main:
        save_state(path, weights, {**payload, **({"rng_ranks": rngs} if rngs is not None else {})}, it, wall, run_id)
    barrier()


def restore_rng(state: dict[str, Any], rank: int) -> None:
    """Restore this rank's RNG state from a checkpoint ``save_collectively`` wrote."""
    set_rng_state(state["rng_ranks"][rank] if "rng_ranks" in state else state["rng"])
