"""Mean-teacher update (paper III-B, IV-B): the teacher is a moving average of the student."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _paired(
    teacher: list[tuple[str, Tensor]], student: list[tuple[str, Tensor]], what: str
) -> tuple[list[Tensor], list[Tensor]]:
    """Match tensors by name; teacher and student must have the same architecture."""
    t_names = [n for n, _ in teacher]
    s_names = [n for n, _ in student]
    if t_names != s_names:
        raise ValueError(
            f"teacher and student {what} differ: {sorted(set(t_names) ^ set(s_names))[:5]}"
        )
    for (name, t), (_, s) in zip(teacher, student, strict=True):
        if t.shape != s.shape:
            raise ValueError(f"{what} {name}: teacher {tuple(t.shape)} vs student {tuple(s.shape)}")
    return [t for _, t in teacher], [s for _, s in student]


def _lerp_(targets: list[Tensor], sources: list[Tensor], lam: float) -> None:
    """``t <- (1 - lam) * t + lam * s`` in place, one fused foreach call when available."""
    if not targets:
        return
    if hasattr(torch, "_foreach_lerp_"):
        torch._foreach_lerp_(targets, sources, lam)
    else:  # pragma: no cover - very old torch
        for t, s in zip(targets, sources, strict=True):
            t.lerp_(s, lam)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, lam: float) -> None:
    """``teacher <- (1 - lam) * teacher + lam * student`` (paper IV-B: lam = 1e-3, every 100
    iterations).

    Parameters and floating-point buffers (BatchNorm running mean/var) are both averaged with the
    same ``lam``: the teacher's normalisation statistics then stay consistent with its averaged
    affine/conv weights (copying the student's statistics would pair mostly-source weights with
    target statistics). If BN is frozen in both networks the buffers are equal and this is a no-op
    for them. Integer buffers (``num_batches_tracked``) are copied from the student.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    tp, sp = _paired(
        list(teacher.named_parameters()), list(student.named_parameters()), "parameters"
    )
    _lerp_(tp, [s.to(t.dtype) for t, s in zip(tp, sp, strict=True)], lam)
    tb, sb = _paired(list(teacher.named_buffers()), list(student.named_buffers()), "buffers")
    float_t = [t for t in tb if t.is_floating_point()]
    float_s = [s.to(t.dtype) for t, s in zip(tb, sb, strict=True) if t.is_floating_point()]
    _lerp_(float_t, float_s, lam)
    for t, s in zip(tb, sb, strict=True):
        if not t.is_floating_point():
            t.copy_(s)


def should_update(iteration: int, interval: int) -> bool:
    """True when the teacher is due: ``iteration`` counts completed student steps (1-based),
    so with interval 100 the teacher updates after steps 100, 200, ... (never at 0)."""
    if interval < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    return iteration > 0 and iteration % interval == 0


EMA_READINGS = ("smoothing", "refresh")


def student_weight(lam: float, reading: str) -> float:
    """The student's weight in one EMA step for the paper's "smoothing factor" ``lam`` (IV-B).

    ``smoothing`` (default): ``lam`` is the weight of the new value, as the smoothing factor of
    exponential smoothing is defined: teacher <- (1 - lam) * teacher + lam * student. With the
    paper's 1e-3 every 100 iterations the teacher keeps 0.999^(N/100) of the source model (82 %
    after 20k iterations). ``refresh``: ``lam`` is the weight of the old value: teacher <- lam *
    teacher + (1 - lam) * student, a teacher that is almost a copy of the student every interval.
    """
    if reading not in EMA_READINGS:
        raise ValueError(f"reading must be one of {EMA_READINGS}, got {reading!r}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    return lam if reading == "smoothing" else 1.0 - lam


@torch.no_grad()
def relative_drift(model: nn.Module, reference: list[Tensor]) -> Tensor:
    """``||theta - theta_ref|| / ||theta_ref||`` over all parameters (a 0-dim tensor): how far a
    network (the teacher) has moved from the source model's weights ``reference``."""
    params = [p.detach().float() for p in model.parameters()]
    if len(params) != len(reference):
        raise ValueError(f"{len(params)} parameters vs {len(reference)} reference tensors")
    diff = torch._foreach_sub(params, reference)
    num = torch.stack(torch._foreach_norm(diff)).square().sum().sqrt()
    den = torch.stack(torch._foreach_norm(reference)).square().sum().sqrt()
    return num / den.clamp_min(1e-12)
