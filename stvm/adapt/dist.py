"""Multi-process adaptation: the collectives that keep the state identical on every DDP rank.

Multi-process (``torchrun --nproc_per_node N``, also across nodes): as in ``train_source``, every
rank takes its own ``batch_size`` crops (disjoint slots of the same seed-keyed sequence), so the
global batch is ``batch_size x world size``. Everything that is carried across iterations is kept
identical on every rank (collectives in ``stvm.adapt.dist``; all no-ops in one process, which
therefore computes bit for bit what it did before):

* student: DistributedDataParallel (gradients averaged over ranks, then identical SGD steps). Its
  BatchNorm is SyncBN on GPU (as in ``train_source``; running statistics then agree and rank 0's
  are broadcast after each step to rule out last-bit differences); on CPU (no SyncBN in torch) each
  rank normalises with its own batch and the running statistics are averaged over ranks after each
  step, i.e. the running mean of the global batch.
* teacher: an EMA of identical students (parameters and BN buffers), hence identical; no
  collective needed (the DDP test checks it).
* metric network M and proxies: explicit gradient averaging before Adam. Each rank selects its
  own class-balanced metric samples (Eq. 1 with the shared thresholds) and the per-rank NCA mean
  is scaled by ``n_rank * world / n_total``, so the averaged gradient is that of the NCA mean over
  all ranks' samples. M's BN buffers (DeepLabV3 heads) are handled as the student's.
* class thresholds: the stride-8 confidences and predictions of all ranks are all-gathered and
  every rank folds the percentiles of the *global* batch into tau (exact, small: B*h*w values).
* MOCM buffers: the clean images, pseudo-labels, reliability (float16, as stored) and distance
  maps of all ranks are all-gathered, and every rank pushes the same candidates in rank order, so
  the FIFO buffers stay identical. Pasting uses the rank's own generator: ranks paste different
  patches (as different images of one big batch would get).
* randomness: the per-iteration generator (photometric noise, metric sampling, pasting) is seeded
  from ``(seed, iteration, rank)`` (rank 0: the single-process seed), the global RNG from
  ``(seed, rank)`` after the nets are built; checkpoints store every rank's global RNG state, so a
  resumed run equals an uninterrupted one on the same world size (the world size is part of the
  run fingerprint when it exceeds 1).
* logging: the per-rank sums of the logged scalars are averaged over ranks at log time only; the
  first non-finite iteration is reduced too, so every rank stops together. Only rank 0 writes
  (checkpoint, plots CSV, model.pt, adapt_metrics.json, progress line); the others wait at a
  barrier after each checkpoint.

Every helper is a no-op (returns its input untouched, issues no collective) when no process group
is initialised or the world has one process, so single-process runs compute exactly what they
computed before DDP support. None of them reads a device value back to the host: on GPU the
collectives are queued on the stream like any kernel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import inspect

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from stvm.adapt.classmix import to_uint8
from stvm.errors import StvmError
from stvm.training import rng_state


def world_size() -> int:
    """Processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s generators: ``seed`` itself on rank 0 (single-process runs unchanged),
    shifted by ``rank * 2**40`` elsewhere (no collision for iteration counts and seeds below 2**40)."""
    return seed + rank * 2**40


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


def check_same_on_all_ranks(value: int, what: str) -> None:
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
        raise StvmError(None, f"adapt: ranks disagree on {what} ({lo} vs {hi}); put the output folder on a "
                              "file system every node sees")


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if world_size() > 1:
        dist.barrier()


def distribute(nets: Any, dev: torch.device) -> None:
    """Under torchrun: SyncBN (GPU) and DDP for the student, SyncBN (GPU) and rank 0's weights for M.
    BN buffers are synchronised after each step by ``adapt_step`` / ``metric_step`` instead of
    DDP's per-forward broadcast (see above). No-op in one process."""
    if world_size() == 1:
        return
    if dev.type == "cuda":
        was_student = nets.teacher is nets.student
        nets.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets.student)
        nets.teacher = nets.student if was_student else nets.teacher
        if nets.metric is not None:
            nets.metric = torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets.metric)
    # buffers: synced once at construction (rank 0's), then by us after each step, not per forward
    no_fwd_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel).parameters else {"broadcast_buffers": False})
    nets.train_forward = DistributedDataParallel(nets.student, **no_fwd_sync)
    if nets.metric is not None:
        broadcast_module(nets.metric)


def gather_candidates(images: Tensor, pseudo: Tensor, weight: Tensor, d: Tensor, n_classes: int) -> tuple[Tensor, ...]:
    """MOCM candidates of every rank in rank order (the inputs themselves in one process), gathered in
    the dtypes the buffers store (uint8 image, small-int labels, float16 reliability), so pushing them
    stores exactly what pushing the float originals would."""
    if world_size() == 1:
        return images, pseudo, weight, d
    labels = pseudo.to(torch.uint8 if n_classes <= 256 else torch.int32)
    return (all_gather_cat(to_uint8(images)), all_gather_cat(labels),
            all_gather_cat(weight.to(torch.float16)), all_gather_cat(d))
