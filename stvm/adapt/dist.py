"""Multi-process adaptation: what keeps its state identical on every DDP rank (the collectives
themselves, and "is this distributed?", are ``stvm.distributed``).

Multi-process (``torchrun --nproc_per_node N``, also across nodes): as in ``train_source``, every
rank takes its own ``batch_size`` crops (disjoint slots of the same seed-keyed sequence), so the
global batch is ``batch_size x world size``. Everything that is carried across iterations is kept
identical on every rank (collectives in ``stvm.distributed``; all no-ops in one process, which
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

Every helper is a no-op (returns its input untouched, issues no collective) in a one-process
world, so single-process runs compute exactly what they computed before DDP support.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from stvm.adapt.classmix import to_uint8
from stvm.distributed import all_gather_cat, broadcast_module, distribute_model, sync_bn, world_size


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s generators: ``seed`` itself on rank 0 (single-process runs unchanged),
    shifted by ``rank * 2**40`` elsewhere (no collision for iteration counts and seeds below 2**40)."""
    return seed + rank * 2**40


def distribute(nets: Any, dev: torch.device) -> None:
    """Under torchrun: the student as ``distributed.distribute_model`` makes it (SyncBN on GPU, DDP
    for its training forward), M with SyncBN (GPU) and rank 0's weights. BN buffers are synchronised
    after each step by ``distributed.optimizer_step`` instead of DDP's per-forward broadcast (see
    above). No-op in one process."""
    if world_size() == 1:
        return
    was_student = nets.teacher is nets.student
    nets.student, nets.train_forward = distribute_model(nets.student, dev)
    nets.teacher = nets.student if was_student else nets.teacher
    if nets.metric is not None:
        nets.metric = sync_bn(nets.metric, dev)
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
