"""STvM losses and the metric distance: Eq. 2 (NCA), Eq. 3 (distance), Eq. 4 (reliability), Eq. 5
(weighted CE).

All functions are pure, keep everything on the input's device and never synchronise with the host
(no ``.item()``, no data-dependent shapes), so the adaptation loop can call them every iteration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-12


def normalized_sq_distance(f: Tensor, proxies: Tensor, eps: float = _EPS) -> Tensor:
    """Eq. 3 for every proxy: ``d(x, y) = sum_i (x_i/||x|| - y_i/||y||)^2``, in [0, 4].

    ``f`` is either a feature map ``(B, D, h, w)`` (result ``(B, C, h, w)``) or rows ``(N, D)``
    (result ``(N, C)``); ``proxies`` is ``(C, D)``. Normalisation divides by ``max(||x||, eps)`` so
    a zero vector gives a finite distance and gradient. The square is expanded as ``|x|^2 + |y|^2 -
    2 x.y`` (one matmul instead of a (.., C, D) difference tensor) and clamped to [0, 4] against
    rounding.
    """
    if f.dim() not in (2, 4) or proxies.dim() != 2 or f.shape[1] != proxies.shape[1]:
        raise ValueError(
            f"expected f (N,D) or (B,D,h,w) and proxies (C,D); "
            f"got {tuple(f.shape)}, {tuple(proxies.shape)}"
        )
    fn = F.normalize(f, dim=1, eps=eps)
    pn = F.normalize(proxies.to(f.dtype), dim=1, eps=eps)
    if f.dim() == 2:
        dot = fn @ pn.t()  # (N, C)
        f_sq = fn.pow(2).sum(1, keepdim=True)
        p_sq = pn.pow(2).sum(1)[None, :]
    else:
        dot = torch.einsum("bdhw,cd->bchw", fn, pn)
        f_sq = fn.pow(2).sum(1, keepdim=True)
        p_sq = pn.pow(2).sum(1)[None, :, None, None]
    return (f_sq + p_sq - 2.0 * dot).clamp(0.0, 4.0)


def nca_loss(
    dist: Tensor, labels: Tensor, temperature: float, valid: Tensor | None = None
) -> Tensor:
    """Eq. 2, proxy-NCA with temperature: ``-log softmax(-d / T)[label]``, MEAN over valid samples.

    ``dist`` is ``(N, C)`` (distance of each sample to every proxy), ``labels`` ``(N,)``; ``valid``
    (``(N,)`` bool, optional) marks real samples in a fixed-size padded selection (see
    ``stvm.adapt.metric.select_metric_samples``); invalid rows contribute nothing.

    The paper writes a sum over pixels. We return the mean: the number of selected samples changes
    from iteration to iteration (it is capped by the rarest confident class), and a sum would make
    the step size depend on that count; with Adam (the paper's optimiser for M) the overall scale
    matters little anyway, so the mean only removes the per-iteration fluctuation. With no valid
    sample the result is an exact 0 that is still connected to ``dist`` (backward gives zero grads).
    """
    if dist.dim() != 2 or labels.shape != dist.shape[:1]:
        raise ValueError(
            f"expected dist (N,C) and labels (N,); got {tuple(dist.shape)}, {tuple(labels.shape)}"
        )
    n_cls = dist.shape[1]
    logp = F.log_softmax(-dist / temperature, dim=1)
    picked = logp.gather(1, labels.long().clamp(0, n_cls - 1)[:, None])[:, 0]
    if valid is None:
        valid = torch.ones_like(picked, dtype=torch.bool)
    per = torch.where(valid, -picked, torch.zeros_like(picked))
    return per.sum() / valid.sum().clamp_min(1).to(per.dtype)


def reliability(dist_to_pred_proxy: Tensor, alpha: float, beta: float) -> Tensor:
    """Eq. 4, reverse sigmoid: ``w = 1 / (1 + exp(-alpha * (beta - d)))``; 0.5 at ``d = beta``."""
    return torch.sigmoid(alpha * (beta - dist_to_pred_proxy))


def weighted_ce(logits: Tensor, pseudo: Tensor, weight: Tensor, ignore_index: int = 255) -> Tensor:
    """Eq. 5: pixel-wise cross-entropy times the (detached) reliability ``w``, averaged over pixels.

    ``logits`` ``(B, C, H, W)``, ``pseudo`` ``(B, H, W)`` long, ``weight`` ``(B, H, W)``. The weight
    only scales gradients (paper: "gradient scaling factor"), so it is detached here and no gradient
    reaches the metric network through it. Pixels labelled ``ignore_index`` (e.g. padding)
    contribute 0 and are left out of the denominator; without ignore pixels the denominator is
    exactly the paper's ``B * H * W`` (batch mean of the ``1/(H*W)`` sums), and with ``w == 1`` the
    result equals ``F.cross_entropy(logits, pseudo, ignore_index=ignore_index)``.
    """
    if (
        logits.dim() != 4
        or pseudo.shape != (logits.shape[0], *logits.shape[2:])
        or weight.shape != pseudo.shape
    ):
        raise ValueError(
            f"expected logits (B,C,H,W), pseudo and weight (B,H,W); got "
            f"{tuple(logits.shape)}, {tuple(pseudo.shape)}, {tuple(weight.shape)}"
        )
    ce = F.cross_entropy(logits, pseudo.long(), reduction="none", ignore_index=ignore_index)
    valid = pseudo != ignore_index
    per = torch.where(valid, ce * weight.detach().to(ce.dtype), torch.zeros_like(ce))
    return per.sum() / valid.sum().clamp_min(1).to(per.dtype)
