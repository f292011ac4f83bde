"""Photometric noise for the student input (paper III-B/III-D), as in DACS/ClassMix strong
augmentation.

Images are float ``(B, 3, H, W)`` RGB in [0, 1] (normalise with the ImageNet mean/std AFTER this and
after MOCM). Every random draw comes from an explicit ``torch.Generator`` and is made per batch
element in one call, so the result is a deterministic function of the generator state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def _hue_basis() -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
    """Constant parts of ``inv(T) @ R(theta) @ T`` (T = RGB->YIQ, R rotates the I/Q plane): the
    matrix is ``A + cos(theta) * Bc + sin(theta) * Bs``. Python floats, so no host->device copy."""
    t = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=torch.float64,
    )
    ti = torch.linalg.inv(t)
    a = torch.outer(ti[:, 0], t[0])
    bc = torch.outer(ti[:, 1], t[1]) + torch.outer(ti[:, 2], t[2])
    bs = torch.outer(ti[:, 2], t[1]) - torch.outer(ti[:, 1], t[2])
    return a.tolist(), bc.tolist(), bs.tolist()


_HUE_A, _HUE_BC, _HUE_BS = _hue_basis()


def rand_on(
    generator: torch.Generator, shape: tuple[int, ...], device: torch.device | str
) -> Tensor:
    """Uniform [0, 1) numbers drawn with ``generator`` on its own device, returned on ``device``.

    With a generator on the tensors' device (the normal case on GPU) the move is a no-op.
    """
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's ``_blend``: ``ratio * a + (1 - ratio) * b``, clamped to [0, 1]; ``ratio (B,)``.

    Vectorised over the batch: one factor per image.
    """
    r = ratio.view(-1, 1, 1, 1)
    return (r * a + (1.0 - r) * b).clamp(0.0, 1.0)


def _gray(img: Tensor) -> Tensor:
    return _GRAY[0] * img[:, 0:1] + _GRAY[1] * img[:, 1:2] + _GRAY[2] * img[:, 2:3]


def _hue_rotate(img: Tensor, shift: Tensor) -> Tensor:
    """Hue shift by ``shift`` (fraction of a turn, ``(B,)``) as a rotation of the YIQ chroma plane.

    A linear stand-in for torchvision's HSV hue shift (same effect on hue, no HSV round trip).
    """
    theta = shift.to(img.dtype) * (2.0 * math.pi)
    cos, sin = torch.cos(theta), torch.sin(theta)
    rows = [
        torch.stack(
            [_HUE_A[i][j] + _HUE_BC[i][j] * cos + _HUE_BS[i][j] * sin for j in range(3)], dim=1
        )
        for i in range(3)
    ]
    m = torch.stack(rows, dim=1)  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", m, img).clamp(0.0, 1.0)


def _gaussian_blur(img: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Separable Gaussian blur with a per-image ``sigma`` ``(B,)``, kernel ``2*radius+1``, replicate
    border."""
    b, c, h, w = img.shape
    x = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    k = torch.exp(-(x[None] ** 2) / (2.0 * sigma.to(img.dtype)[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*c, 2r+1)
    y = img.reshape(1, b * c, h, w)
    y = F.conv2d(
        F.pad(y, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=b * c
    )
    y = F.conv2d(
        F.pad(y, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * c
    )
    return y.reshape(b, c, h, w)


def photometric(
    img: Tensor,
    generator: torch.Generator,
    *,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.2,
    p_jitter: float = 0.8,
    p_blur: float = 0.5,
    sigma: tuple[float, float] = (0.15, 1.15),
) -> Tensor:
    """DACS-style strong photometric augmentation of ``img`` ``(B, 3, H, W)`` float in [0, 1].

    Per image, with probability ``p_jitter``: colour jitter with factors ``U[1-brightness,
    1+brightness]``, ``U[1-contrast, 1+contrast]`` (towards the image's mean gray),
    ``U[1-saturation, 1+saturation]`` (towards per-pixel gray) and a hue shift ``U[-hue, hue]``
    turns, applied in that fixed order (torchvision randomises the order; DACS uses s = 0.2, p =
    0.8). Then, with probability ``p_blur``, a Gaussian blur with ``sigma ~ U[sigma]`` (DACS: p =
    0.5, sigma in [0.15, 1.15]); the kernel spans 3 sigma of the largest sigma. Returns a new
    tensor.
    """
    if img.dim() != 4 or img.shape[1] != 3 or not img.is_floating_point():
        raise ValueError(f"expected float (B,3,H,W) in [0,1], got {img.dtype} {tuple(img.shape)}")
    b = img.shape[0]
    u = rand_on(generator, (b, 7), img.device).to(img.dtype)

    def factor(col: int, s: float) -> Tensor:
        return 1.0 + s * (2.0 * u[:, col] - 1.0)

    out = _blend(img, torch.zeros_like(img), factor(1, brightness))
    out = _blend(out, _gray(out).mean((2, 3), keepdim=True), factor(2, contrast))
    out = _blend(out, _gray(out), factor(3, saturation))
    out = _hue_rotate(out, hue * (2.0 * u[:, 4] - 1.0))
    out = torch.where((u[:, 0] < p_jitter).view(-1, 1, 1, 1), out, img)
    s = sigma[0] + (sigma[1] - sigma[0]) * u[:, 6]
    radius = max(1, math.ceil(3.0 * max(sigma)))
    blurred = _gaussian_blur(out, s, radius)
    return torch.where((u[:, 5] < p_blur).view(-1, 1, 1, 1), blurred, out)
