"""Metric-space quality (paper Table VII): silhouette score of the metric network's features.

What is measured (paper IV-C.4: "the silhouette score for each pixel of each image of the
validation set", an overall and a class-wise mean):

* **features**: M applied to the F features of the network M was trained on: the *teacher* when
  the checkpoint carries one (every mean-teacher variant; III-C trains M on the teacher's encoder
  features), otherwise the evaluated network itself. M runs in eval mode (no dropout).
* **pixels**: every valid stride-8 pixel of every val image (labels resized nearest to the
  feature grid, ignore dropped); when there are more than ``max_pixels`` of them, a uniform random
  sample of ``max_pixels`` of them without replacement (seeded, so the figure is reproducible).
* **distance**: Euclidean distance between L2-normalised metric features (the square root of the
  method's Eq. 3 distance), as Rousseeuw's silhouette and ``sklearn.metrics.silhouette_score`` use.
* **figures** (x100 as in the paper): the overall mean over pixels (pixel-weighted) and the mean
  over classes of each class's mean silhouette.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stvm.data.images import normalize, read_label, read_rgb
from stvm.data.labels import protocol_lut


def silhouette(features: torch.Tensor, labels: torch.Tensor, n_classes: int,
               chunk: int = 1024) -> tuple[torch.Tensor, float, float]:
    """Silhouette of rows ``features (N, D)`` with ``labels (N,)``; returns (per-class, class mean,
    overall). Distance: Euclidean between L2-normalised rows. Memory ``chunk * N``.

    Classes with a single sample have an undefined silhouette (NaN, left out of both means).
    """
    z = F.normalize(features.float(), dim=1)  # float32 distances (4x faster than float64 on CPU),
    n = z.shape[0]                            # summed per chunk in float64
    onehot = F.one_hot(labels, n_classes).float()
    counts = onehot.sum(0).double()
    sums = torch.empty(n, n_classes, dtype=torch.float64)
    for i in range(0, n, chunk):  # summed distance of each sample to each class, chunk by chunk
        d = (2.0 - 2.0 * z[i:i + chunk] @ z.T).clamp_min(0.0).sqrt()
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = 0.0  # exact self-distance
        sums[i:i + chunk] = (d @ onehot).double()
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


class UniformSample:
    """A uniform random sample without replacement of at most ``k`` rows from a stream of batches:
    every row gets a random key and the ``k`` smallest keys are kept (bounded memory)."""

    def __init__(self, k: int, seed: int = 0) -> None:
        self.k, self.rng = k, np.random.default_rng(seed)
        self.keys = torch.zeros(0, dtype=torch.float64)
        self.rows: torch.Tensor | None = None
        self.labels = torch.zeros(0, dtype=torch.long)

    def add(self, rows: torch.Tensor, labels: torch.Tensor) -> None:
        """Offer ``rows (n, D)`` with ``labels (n,)``."""
        keys = torch.from_numpy(self.rng.random(len(labels)))
        self.keys = torch.cat([self.keys, keys])
        self.rows = rows if self.rows is None else torch.cat([self.rows, rows])
        self.labels = torch.cat([self.labels, labels])
        if len(self.keys) > self.k:
            keep = torch.argsort(self.keys)[: self.k]
            self.keys, self.rows, self.labels = self.keys[keep], self.rows[keep], self.labels[keep]


@torch.inference_mode()
def embed_pixels(model, head, images: Path, labels: Path, protocol: int, input_size: tuple[int, int],
                 max_pixels: int, dev: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Metric features and GT labels of valid stride-8 val pixels (all, or a uniform sample of
    ``max_pixels``); also returns how many valid pixels there were."""
    lut = protocol_lut(protocol)
    sample, total = UniformSample(max_pixels, seed), 0
    for path in sorted(images.glob("*.png")):
        img = read_rgb(path)
        if img.shape[1::-1] != tuple(input_size):
            import cv2

            img = cv2.resize(img, input_size, interpolation=cv2.INTER_LINEAR)
        f = head(model.features(normalize(img)[None].to(dev)))[0]  # (D, h, w)
        lab = torch.from_numpy(lut[read_label(labels / path.name)])[None, None].float()
        lab = F.interpolate(lab, size=f.shape[-2:], mode="nearest")[0, 0].long().reshape(-1)
        valid = torch.nonzero(lab != 255)[:, 0]
        total += len(valid)
        sample.add(f.reshape(f.shape[0], -1).T.float().cpu()[valid], lab[valid])
    rows = sample.rows if sample.rows is not None else torch.zeros(0, 1)
    return rows, sample.labels, total


def silhouette_for_checkpoint(model, meta: dict, images: Path, labels: Path, dev: torch.device,
                              input_size: tuple[int, int], max_pixels: int = 20000) -> dict[str, Any]:
    """Table VII figures for a checkpoint that carries its metric network (``meta['metric_head']``),
    on the teacher's features when the checkpoint has the teacher (see the module docstring)."""
    from stvm.models.deeplab import build_head

    protocol = int(meta.get("protocol", 19))
    state = meta["metric_head"]
    n_f = int(state["proxies"].shape[1])
    head = build_head(meta["arch"], model.feature_channels, n_f, model.dilations).to(dev).eval()
    head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    net = model
    if "teacher" in meta:
        net = copy.deepcopy(model)
        net.load_state_dict(meta["teacher"])
    feats, labs, total = embed_pixels(net.eval(), head, images, labels, protocol, input_size, max_pixels, dev)
    n_classes = int(protocol_lut(protocol)[protocol_lut(protocol) != 255].max()) + 1
    _, class_mean, overall = silhouette(feats, labs, n_classes)
    return {"silhouette/class_mean": round(100 * class_mean, 2), "silhouette/overall_mean": round(100 * overall, 2),
            "silhouette/pixels": len(labs), "silhouette/valid_pixels": total}
