"""Metric-space quality (paper Table VII): silhouette score of the metric network's features.

Pixels of the target validation set are embedded by M (on the evaluated network's F features),
labelled with the ground truth, and a class-balanced sample is scored with the silhouette
coefficient under the method's own distance (Eq. 3, normalised squared L2). Reported x100 as the
paper does: the mean over classes of each class's mean silhouette ("class mean") and the mean over
all sampled pixels ("overall mean").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stvm.data.datasets import read_label, read_rgb
from stvm.data.labels import protocol_lut
from stvm.evaluate.inference import normalize


def silhouette(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, float, float]:
    """Silhouette of rows ``features (N, D)`` with ``labels (N,)``; returns (per-class, class mean, overall).

    Distances are Eq. 3 (squared L2 between L2-normalised vectors). Classes with fewer than two
    samples get NaN and are left out of both means (their silhouette is undefined).
    """
    z = F.normalize(features.double(), dim=1)
    dist = (2.0 - 2.0 * z @ z.T).clamp_min(0.0)
    onehot = F.one_hot(labels, n_classes).double()
    counts = onehot.sum(0)
    sums = dist @ onehot  # (N, C): summed distance of each sample to each class
    own = counts[labels]
    a = sums.gather(1, labels[:, None])[:, 0] / (own - 1).clamp_min(1)
    mean_to = sums / counts.clamp_min(1)
    mean_to[:, counts == 0] = float("inf")
    mean_to.scatter_(1, labels[:, None], float("inf"))
    b = mean_to.min(1).values
    s = (b - a) / torch.maximum(a, b)
    s = torch.where((own > 1) & torch.isfinite(b), s, torch.full_like(s, float("nan")))
    per_class = torch.stack([s[labels == c].nanmean() if (labels == c).any() else s.new_tensor(float("nan"))
                             for c in range(n_classes)])
    return per_class, float(per_class.nanmean()), float(s.nanmean())


@torch.inference_mode()
def embed_pixels(model, head, images: Path, labels: Path, protocol: int, input_size: tuple[int, int],
                 per_image: int, dev: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Metric features and GT labels of up to ``per_image`` random valid stride-8 pixels per image."""
    lut = protocol_lut(protocol)
    rng = np.random.default_rng(seed)
    feats, labs = [], []
    for path in sorted(images.glob("*.png")):
        img = read_rgb(path)
        if img.shape[1::-1] != tuple(input_size):
            import cv2

            img = cv2.resize(img, input_size, interpolation=cv2.INTER_LINEAR)
        f = head(model.features(normalize(img)[None].to(dev)))[0]  # (D, h, w)
        lab = lut[read_label(labels / path.name)]
        lab = torch.from_numpy(lab)[None, None].float()
        lab = F.interpolate(lab, size=f.shape[-2:], mode="nearest")[0, 0].long().reshape(-1)
        valid = torch.nonzero(lab != 255)[:, 0].numpy()
        pick = rng.choice(valid, size=min(per_image, len(valid)), replace=False) if len(valid) else valid
        feats.append(f.reshape(f.shape[0], -1).T[torch.from_numpy(pick).to(dev)].float().cpu())
        labs.append(lab[torch.from_numpy(pick)])
    return torch.cat(feats), torch.cat(labs)


def balanced_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of at most ``per_class`` random samples of each class (class-balanced scoring)."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c)[:, 0]
        keep.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long)


def silhouette_for_checkpoint(model, meta: dict, images: Path, labels: Path, dev: torch.device,
                              input_size: tuple[int, int]) -> dict[str, Any]:
    """Table VII figures for a checkpoint that carries its metric network (``meta['metric_head']``)."""
    from stvm.models.deeplab import build_head

    protocol = int(meta.get("protocol", 19))
    state = meta["metric_head"]
    n_f = int(state["proxies"].shape[1])
    head = build_head(meta["arch"], model.feature_channels, n_f).to(dev).eval()
    head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    feats, labs = embed_pixels(model.eval(), head, images, labels, protocol, input_size, 64, dev)
    keep = balanced_subset(labs, 200)
    n_classes = int(protocol_lut(protocol)[protocol_lut(protocol) != 255].max()) + 1
    _, class_mean, overall = silhouette(feats[keep], labs[keep], n_classes)
    return {"silhouette/class_mean": round(100 * class_mean, 2), "silhouette/overall_mean": round(100 * overall, 2)}
