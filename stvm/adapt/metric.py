"""Reliability metric learning (paper III-C): metric head and proxies, class-balanced thresholds
(Eq. 1), balanced metric pseudo-label sampling, and resolution helpers.

Resolution used for metric training (an interpretation; the paper speaks of "each pixel"): the
metric head M runs on the teacher's stride-8 features, so metric features are ``(B, N_f, h, w)``. M
and the proxies are trained on stride-8 pixels whose labels / confidences come from the teacher's
stride-8 logits (``pred = argmax``, ``prob_max = max softmax``), and the class thresholds are
estimated from the same stride-8 confidences. For the reliability of Eq. 4 and for MOCM, the
distance map ``(B, C, h, w)`` is upsampled bilinearly to ``H x W`` and read at the full-resolution
pseudo-label (``distance_to_prediction``), so every full-resolution pseudo-label gets a distance to
the proxy of its own class.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stvm.adapt.augment import rand_on
from stvm.adapt.losses import normalized_sq_distance


class MetricHead(nn.Module):
    """Metric network M (same architecture as the classifier C) plus one trainable proxy per class.

    ``head`` maps backbone features ``(B, in_ch, h, w)`` to ``(B, n_f, h, w)`` (the lead passes
    ``build_head(arch, in_ch, n_f)``). Proxies ``(C, n_f)`` are initialised with orthonormal rows
    (``nn.init.orthogonal_``, when ``C <= n_f``; otherwise i.i.d. normal with std ``1/sqrt(n_f)``)
    so all classes start equidistant (d = 2) and no class is favoured; only directions matter for
    Eq. 3.
    """

    def __init__(
        self, head: nn.Module, n_classes: int, n_f: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.head = head
        self.proxies = nn.Parameter(torch.empty(n_classes, n_f))
        with torch.no_grad():
            if n_classes <= n_f:
                nn.init.orthogonal_(self.proxies, generator=generator)
            else:
                nn.init.normal_(self.proxies, std=1.0 / math.sqrt(n_f), generator=generator)

    def forward(self, feats: Tensor) -> Tensor:
        """Metric features ``(B, n_f, h, w)``."""
        return self.head(feats)

    def distances(self, metric_feats: Tensor) -> Tensor:
        """Eq. 3 distance of every pixel (or row) to every proxy: ``(B, C, h, w)`` or ``(N, C)``."""
        return normalized_sq_distance(metric_feats, self.proxies)


class ClassThresholds(nn.Module):
    """Per-class confidence thresholds tau_c of Eq. 1, a moving average of per-batch percentiles.

    Percentile direction (interpretation): q_M = 0.2 is "a low percentile to obtain highly confident
    predictions", read as in CBST (sort confidences descending, take the value at position
    ``floor(q * n)``): the batch threshold of class c is the ``floor(q * n_c)``-th largest max-prob
    (0-based) among the ``n_c`` pixels predicted as c, so with Eq. 1's strict ``>`` the top
    ``floor(q * n_c)`` (about 20 %) most confident pixels of that class pass.

    State: ``tau (C,)`` starts at 1.0 (max-probabilities never exceed 1, so with ``>`` a class never
    seen selects nothing) and ``seen (C,)``; the first batch that contains class c sets tau_c to its
    percentile directly (no averaging with the 1.0 placeholder), later batches apply
    ``tau <- m * tau + (1 - m) * percentile``; classes absent from a batch keep their value.
    Buffers, so ``state_dict``/``load_state_dict``/``.to(device)`` work as for any module.
    """

    def __init__(self, n_classes: int, momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.n_classes = n_classes
        self.momentum = momentum
        self.register_buffer("tau", torch.ones(n_classes))
        self.register_buffer("seen", torch.zeros(n_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, prob_max: Tensor, pred: Tensor, q: float) -> Tensor:
        """Fold this batch's per-class percentiles into ``tau``; returns the batch percentiles
        ``(C,)``.

        ``prob_max`` and ``pred`` have the same shape (any, e.g. ``(B, h, w)``); ``pred`` values
        outside ``[0, C)`` are ignored. Returned entries of classes absent from the batch are NaN.
        """
        pct, present = batch_percentiles(prob_max, pred, q, self.n_classes)
        m = self.momentum
        ema = torch.where(self.seen, m * self.tau + (1.0 - m) * pct, pct)
        self.tau.copy_(torch.where(present, ema.to(self.tau.dtype), self.tau))
        self.seen |= present
        return torch.where(present, pct, torch.full_like(pct, float("nan")))


def _sort_by_class(cls: Tensor, key: Tensor, descending: bool) -> Tensor:
    """Permutation grouping ``cls`` ascending and, within a class, ``key`` ascending/descending."""
    order = torch.argsort(key, descending=descending, stable=True)
    return order[torch.argsort(cls[order], stable=True)]


def fixed_bincount(x: Tensor, n: int) -> Tensor:
    """``bincount`` of int64 values in ``[0, n)`` with a fixed length ``n``. Unlike
    ``torch.bincount`` (which reads ``x.max()`` back to the host on CUDA) this is one scatter-add,
    no synchronisation."""
    return torch.zeros(n, dtype=torch.long, device=x.device).scatter_add_(0, x, torch.ones_like(x))


def _class_counts(cls: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class counts (sentinel ``n_classes`` dropped) and start offsets in class-sorted order."""
    counts = fixed_bincount(cls, n_classes + 1)[:n_classes]
    return counts, torch.cumsum(counts, 0) - counts


def batch_percentiles(
    prob_max: Tensor, pred: Tensor, q: float, n_classes: int
) -> tuple[Tensor, Tensor]:
    """Per-class top-q percentile of ``prob_max`` (see ``ClassThresholds``), vectorised with one
    sort.

    Returns ``(pct (C,), present (C,) bool)``; ``pct`` of absent classes is 1.0 (unused).
    """
    if prob_max.shape != pred.shape:
        raise ValueError(f"prob_max {tuple(prob_max.shape)} and pred {tuple(pred.shape)} differ")
    prob = prob_max.reshape(-1).float()
    cls = pred.reshape(-1).long()
    cls = torch.where((cls >= 0) & (cls < n_classes), cls, torch.full_like(cls, n_classes))
    if prob.numel() == 0:
        return torch.ones(n_classes, device=prob.device), torch.zeros(
            n_classes, dtype=torch.bool, device=prob.device
        )
    perm = _sort_by_class(cls, prob, descending=True)
    counts, starts = _class_counts(cls, n_classes)
    offset = torch.minimum(torch.floor(counts.double() * q).long(), (counts - 1).clamp_min(0))
    idx = (starts + offset).clamp(0, prob.numel() - 1)
    present = counts > 0
    pct = torch.where(present, prob[perm[idx]], torch.ones_like(idx, dtype=prob.dtype))
    return pct, present


class MetricSamples(NamedTuple):
    """Fixed-size balanced selection: ``C * n_per_class`` slots, class-major.

    ``indices`` are flat positions into ``(B*h*w)`` (row-major over ``B, h, w``), ``labels`` the
    class of each slot, ``valid`` which slots hold a real sample (padding slots point at pixel 0).
    """

    indices: Tensor
    labels: Tensor
    valid: Tensor


SAMPLING_RULES = ("per_class", "min_count")


def select_metric_samples(
    pred: Tensor, prob_max: Tensor, tau: Tensor, n_per_class: int, generator: torch.Generator,
    rule: str = "per_class",
) -> MetricSamples:
    """Eq. 1 metric pseudo-labels (``prob_max > tau[pred]``), then an EQUAL number per class.

    ``rule`` says how "an equal number of samples in each class" (III-C) is met:

    * ``per_class`` (default): every class with >= 1 eligible pixel gets ``n_per_class`` samples:
      a random subset when it has at least that many eligible pixels, otherwise each of its
      pixels repeated in turn (``j mod count``), so M always trains on ``n_per_class`` samples of
      every present class;
    * ``min_count``: ``k = min(n_per_class, min over present classes of their eligible count)``
      distinct pixels per class, so the rarest confident class sets k for all (often 1-2 pixels).

    The order inside a class comes from random keys drawn with ``generator`` and one (class, key)
    sort; the output has a fixed size ``C * n_per_class`` with a ``valid`` mask (no host sync).
    ``generator`` may live on any device (keys are drawn there and moved).
    """
    if rule not in SAMPLING_RULES:
        raise ValueError(f"rule must be one of {SAMPLING_RULES}, got {rule!r}")
    if pred.shape != prob_max.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and prob_max {tuple(prob_max.shape)} differ")
    n_cls = tau.shape[0]
    cls = pred.reshape(-1).long()
    prob = prob_max.reshape(-1)
    in_range = (cls >= 0) & (cls < n_cls)
    eligible = in_range & (prob > tau[cls.clamp(0, n_cls - 1)].to(prob.dtype))
    cls = torch.where(eligible, cls, torch.full_like(cls, n_cls))
    n_pix = cls.numel()
    j = torch.arange(n_per_class, device=cls.device)
    labels = torch.arange(n_cls, device=cls.device).repeat_interleave(n_per_class)
    if n_pix == 0:
        zeros = torch.zeros_like(labels)
        return MetricSamples(zeros, labels, zeros.bool())
    keys = rand_on(generator, (n_pix,), cls.device)
    perm = _sort_by_class(cls, keys, descending=False)
    counts, starts = _class_counts(cls, n_cls)
    if rule == "per_class":
        valid = (counts[:, None] > 0).expand(n_cls, n_per_class)
        offset = j[None, :] % counts.clamp_min(1)[:, None]
    else:
        big = torch.iinfo(counts.dtype).max
        k = torch.where(counts > 0, counts, torch.full_like(counts, big)).min().clamp(max=n_per_class)
        valid = (j[None, :] < k) & (counts[:, None] > 0)  # (C, n)
        offset = j[None, :].expand(n_cls, n_per_class)
    pos = (starts[:, None] + offset).clamp(max=n_pix - 1)
    indices = torch.where(valid, perm[pos], torch.zeros_like(pos))
    return MetricSamples(indices.reshape(-1), labels, valid.reshape(-1))


def gather_pixels(x: Tensor, indices: Tensor) -> Tensor:
    """Rows ``(N, D)`` of a map ``(B, D, h, w)`` at flat pixel ``indices`` (MetricSamples)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])[indices]


def downsample_labels(pred: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of labels ``(B, H, W)`` to ``size = (h, w)`` (values stay exact)."""
    out = F.interpolate(pred[:, None].float(), size=size, mode="nearest")
    return out[:, 0].to(pred.dtype)


def distance_to_prediction(dist: Tensor, pred: Tensor) -> Tensor:
    """Distance of each pixel to the proxy of its predicted class, at the resolution of ``pred``.

    ``dist`` ``(B, C, h, w)`` (stride-8 Eq. 3 distances) is upsampled bilinearly
    (align_corners=False, like the logits) to ``pred``'s ``(H, W)`` when the sizes differ, then read
    at ``pred`` ``(B, H, W)`` (values outside ``[0, C)`` read class 0; mask them downstream). Result
    ``(B, H, W)``, feed to ``reliability`` (Eq. 4) and to ``PatchBuffers.push``.
    """
    if dist.shape[-2:] != pred.shape[-2:]:
        dist = F.interpolate(dist, size=pred.shape[-2:], mode="bilinear", align_corners=False)
    idx = pred.long().clamp(0, dist.shape[1] - 1)[:, None]
    return dist.gather(1, idx)[:, 0]
