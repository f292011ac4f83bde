"""Metric-based Online ClassMix (MOCM, paper III-D): per-class FIFO patch buffers filled during
training with patches whose mean metric distance to their class proxy is below tau_MOCM, and pasted
onto the (photometrically augmented) student input, its pseudo-labels and its reliability map.

A patch is one class's pixels in one image: the whole crop-sized mask at its original position (as
ClassMix does), the image, and the reliability map; the pseudo-label of a patch is its class.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stvm.adapt.augment import rand_on
from stvm.adapt.metric import fixed_bincount


def to_uint8(images: Tensor) -> Tensor:
    """Images as uint8 (how MOCM buffers store them: a quarter of float32 memory); float input in [0, 1]."""
    if images.dtype == torch.uint8:
        return images
    return (images.float() * 255.0).round().clamp(0, 255).to(torch.uint8)


class PatchBuffers(nn.Module):
    """Per-class FIFO buffers of ``size`` patches each, fixed-shape device storage.

    Views: ``image`` uint8 ``(C, size, 3, H, W)``, ``mask`` bool ``(C, size, H, W)``,
    ``reliability`` float16 ``(C, size, H, W)``; ``ptr (C,)`` is the next slot to write (the oldest
    patch once full), ``count (C,)`` the number of stored patches (slots ``0..count-1`` are filled).
    The storage has one extra scratch slot where rejected candidates are written, so ``push`` needs
    no data-dependent shapes. Memory is ``6 * H * W`` bytes per slot (3 image + 1 mask + 2
    reliability): at the paper setting (C = 19, size 50, 512 x 512 crops) 19 * 50 * 6 * 512 * 512 =
    1,494,220,800 bytes (1.49 GB, 1.39 GiB) plus one 1,572,864-byte scratch slot. Buffers, so
    ``state_dict`` / ``load_state_dict`` / ``.to(device)`` put them into checkpoints and onto the
    GPU.
    """

    def __init__(
        self,
        n_classes: int,
        size: int,
        height: int,
        width: int,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if n_classes < 1 or size < 1:
            raise ValueError(f"n_classes and size must be >= 1, got {n_classes}, {size}")
        self.n_classes, self.size, self.height, self.width = n_classes, size, height, width
        slots = n_classes * size + 1
        self.register_buffer(
            "image_store", torch.zeros(slots, 3, height, width, dtype=torch.uint8, device=device)
        )
        self.register_buffer(
            "mask_store", torch.zeros(slots, height, width, dtype=torch.bool, device=device)
        )
        self.register_buffer(
            "rel_store", torch.zeros(slots, height, width, dtype=torch.float16, device=device)
        )
        self.register_buffer("ptr", torch.zeros(n_classes, dtype=torch.long, device=device))
        self.register_buffer("count", torch.zeros(n_classes, dtype=torch.long, device=device))

    @staticmethod
    def storage_bytes(n_classes: int, size: int, height: int, width: int) -> int:
        """Bytes of the patch storage (including the scratch slot), for the memory note/logs."""
        return (n_classes * size + 1) * 6 * height * width

    @property
    def image(self) -> Tensor:
        return self.image_store[:-1].view(self.n_classes, self.size, 3, self.height, self.width)

    @property
    def mask(self) -> Tensor:
        return self.mask_store[:-1].view(self.n_classes, self.size, self.height, self.width)

    @property
    def reliability(self) -> Tensor:
        return self.rel_store[:-1].view(self.n_classes, self.size, self.height, self.width)

    def fill_fraction(self) -> Tensor:
        """Mean over classes of ``count / size`` (0-dim tensor on the buffers' device)."""
        return self.count.float().mean() / self.size

    def _candidates(self, pred: Tensor, dist_to_proxy: Tensor) -> tuple[Tensor, Tensor]:
        """Per (image, class): pixel count and mean distance, ``(B, C)`` each (one scatter-add)."""
        b, c = pred.shape[0], self.n_classes
        cls = pred.long()
        img_id = torch.arange(b, device=pred.device).view(b, 1, 1)
        key = torch.where(
            (cls >= 0) & (cls < c), img_id * c + cls, torch.full_like(cls, b * c)
        ).reshape(-1)
        counts = fixed_bincount(key, b * c + 1)[: b * c].view(b, c)
        sums = torch.zeros(b * c + 1, device=pred.device, dtype=torch.float32)
        sums.scatter_add_(0, key, dist_to_proxy.reshape(-1).float())
        return counts, sums[: b * c].view(b, c) / counts.clamp_min(1)

    @torch.no_grad()
    def push(
        self,
        images: Tensor,
        pred: Tensor,
        reliability: Tensor,
        dist_to_proxy: Tensor,
        tau_mocm: float,
        min_pixels: int = 1,
    ) -> Tensor:
        """Store every (image b, class c) patch whose mean distance to proxy c is below
        ``tau_mocm``.

        ``images`` ``(B, 3, H, W)`` uint8 or float in [0, 1] (the clean teacher input), ``pred``
        ``(B, H, W)`` full-resolution pseudo-labels (values outside ``[0, C)`` are ignored),
        ``reliability`` and ``dist_to_proxy`` ``(B, H, W)`` (distance of each pixel to its predicted
        class's proxy). ``min_pixels`` (default 1: the paper has no size limit) rejects tiny
        patches. Several images accepting the same class in one batch get consecutive FIFO slots in
        batch order (if more than ``size``, only the last ``size`` are kept). Returns the accept
        matrix ``(B, C)``. No host synchronisation.
        """
        b, _, h, w = images.shape
        if (h, w) != (self.height, self.width) or pred.shape != (b, h, w):
            raise ValueError(
                f"images {tuple(images.shape)} / pred {tuple(pred.shape)} "
                f"do not fit buffers of {self.height}x{self.width}"
            )
        c, s = self.n_classes, self.size
        counts, mean = self._candidates(pred, dist_to_proxy)
        accept = (counts >= max(1, min_pixels)) & (mean < tau_mocm)
        rank = torch.cumsum(accept.long(), 0) - 1
        n_acc = accept.sum(0)
        accept &= rank >= n_acc - s
        slot = (self.ptr[None, :] + rank) % s
        classes = torch.arange(c, device=pred.device)
        flat = torch.where(
            accept, classes[None, :] * s + slot, torch.full_like(slot, c * s)
        ).reshape(-1)
        self.image_store[flat] = (
            to_uint8(images)[:, None].expand(b, c, 3, h, w).reshape(b * c, 3, h, w)
        )
        self.mask_store[flat] = (pred.long()[:, None] == classes.view(1, c, 1, 1)).reshape(
            b * c, h, w
        )
        self.rel_store[flat] = (
            reliability.to(torch.float16)[:, None].expand(b, c, h, w).reshape(b * c, h, w)
        )
        self.ptr.copy_((self.ptr + n_acc) % s)
        self.count.copy_(torch.clamp(self.count + n_acc, max=s))
        return accept

    def _choose(self, b: int, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Per image: ``n`` distinct random classes (non-empty first) and one random stored slot
        each.

        Returns ``(classes (B, n), flat slot ids (B, n), ok (B, n))``; ``ok`` is false where fewer
        than ``n`` classes are non-empty.
        """
        c = self.n_classes
        u = rand_on(generator, (b, c + n), self.count.device)
        nonempty = self.count > 0
        keys = torch.where(nonempty[None, :], u[:, :c], torch.full_like(u[:, :c], 2.0))
        chosen = torch.argsort(keys, dim=1, stable=True)[:, :n]
        cnt = self.count[chosen]
        slot = torch.minimum(torch.floor(u[:, c:] * cnt).long(), (cnt - 1).clamp_min(0))
        return chosen, chosen * self.size + slot, nonempty[chosen]

    @torch.no_grad()
    def paste(
        self, images: Tensor, pseudo: Tensor, weight: Tensor, n: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """MOCM mix: paste one random stored patch of each of ``n`` random classes onto every image.

        ``images`` ``(B, 3, H, W)`` float in [0, 1] (or uint8), ``pseudo`` ``(B, H, W)`` long,
        ``weight`` ``(B, H, W)`` reliability. Where a patch mask is true the image takes the patch
        pixels, the pseudo-label becomes the patch's class and the weight its stored reliability;
        later pastes overwrite earlier ones (a per-pixel "last writer" index, no loop). Choices
        differ per image and come from ``generator``. With fewer non-empty classes than ``n`` the
        existing ones are used; with none (or ``n = 0``) the outputs equal the inputs. Returns
        ``(image, pseudo, weight, pasted)``: new tensors (the inputs themselves when ``n <= 0``) and
        the bool ``(B, H, W)`` map of pixels a patch covers (its mean is the logged coverage).
        """
        b, _, h, w = images.shape
        if (
            (h, w) != (self.height, self.width)
            or pseudo.shape != (b, h, w)
            or weight.shape != (b, h, w)
        ):
            raise ValueError(
                f"images {tuple(images.shape)} / pseudo / weight "
                f"do not fit buffers of {self.height}x{self.width}"
            )
        n = min(n, self.n_classes)
        if n <= 0:
            return images, pseudo, weight, torch.zeros_like(pseudo, dtype=torch.bool)
        chosen, flat, ok = self._choose(b, n, generator)
        masks = self.mask_store[flat] & ok[:, :, None, None]  # (B, n, H, W)
        order = torch.arange(1, n + 1, device=masks.device).view(1, n, 1, 1)
        # (B, H, W) "last writer": 0 = not pasted, j = patch j-1 was the last to cover the pixel
        writer = (masks.long() * order).amax(1)
        pasted = writer > 0
        wi = (writer - 1).clamp_min(0).view(b, -1)
        src = flat.gather(1, wi).view(b, h, w)
        label = chosen.gather(1, wi).view(b, h, w)
        hh = torch.arange(h, device=src.device).view(1, h, 1)
        ww = torch.arange(w, device=src.device).view(1, 1, w)
        patch = self.image_store[
            src[:, None],
            torch.arange(3, device=src.device).view(1, 3, 1, 1),
            hh[:, None],
            ww[:, None],
        ]
        patch = (
            patch.to(images.dtype) / 255.0 if images.is_floating_point() else patch.to(images.dtype)
        )
        rel = self.rel_store[src, hh, ww].to(weight.dtype)
        out_img = torch.where(pasted[:, None], patch, images)
        out_pseudo = torch.where(pasted, label.to(pseudo.dtype), pseudo)
        out_weight = torch.where(pasted, rel, weight)
        return out_img, out_pseudo, out_weight, pasted
