"""A checkpoint's networks for inspection: the evaluated network, its mean teacher and metric head M.

Shared by ``stvm predict`` (confidence and reliability maps beside the predictions) and the evaluate
stage's maps (``stvm.evaluate.maps``, drawn by the report's qualitative panel). The reliability map is Eq. 4 of the checkpoint's own M (``meta['metric_head']``)
on the teacher's F features, read at the teacher's pseudo-label, with the run's alpha and beta
(``meta['params']``), exactly as in training; the teacher (``meta['teacher']``) gives the confidence
(max softmax), or the network itself when the checkpoint has no teacher.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stvm.errors import StvmError


@dataclass(frozen=True)
class LoadedNets:
    """The evaluated network of one checkpoint, its teacher and metric head (None when absent)."""

    model: torch.nn.Module
    teacher: torch.nn.Module | None
    metric: torch.nn.Module | None
    meta: dict


def load_nets(path: Path, device: torch.device) -> LoadedNets:
    """Rebuild the evaluated network and, when the checkpoint carries them, its teacher and M."""
    from stvm.models.weights import load_model_checkpoint

    model, meta = load_model_checkpoint(path)
    return nets_from(model, meta, device)


def nets_from(model: torch.nn.Module, meta: dict, device: torch.device) -> LoadedNets:
    """The networks of a checkpoint already loaded (``load_model_checkpoint``'s model and meta)."""
    from stvm.adapt.metric import MetricHead
    from stvm.models.deeplab import build_head

    model.to(device).eval()
    extras = meta.get("extras", [])
    teacher = metric = None
    if "teacher" in extras:
        teacher = copy.deepcopy(model)
        teacher.load_state_dict(meta["teacher"])
        teacher.eval()
    if "metric_head" in extras:
        state = meta["metric_head"]
        n_f = int(state["proxies"].shape[1])
        metric = MetricHead(build_head(meta["arch"], model.feature_channels, n_f, model.dilations), model.num_classes, n_f)
        metric.load_state_dict(state)
        metric.to(device).eval()
    return LoadedNets(model, teacher, metric, meta)


@torch.inference_mode()
def probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax ``(C, H, W)`` of ``model`` at the input's resolution (``x`` is one image, 1x3xHxW)."""
    logits = model(x)
    return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False).softmax(1)[0]


def confidence_map(nets: LoadedNets, x: torch.Tensor) -> np.ndarray:
    """Max softmax of the teacher (or of the network without one), HxW float32 in [0, 1]."""
    return probs(nets.teacher or nets.model, x).max(0).values.float().cpu().numpy()


@torch.inference_mode()
def reliability_map(nets: LoadedNets, x: torch.Tensor) -> np.ndarray:
    """Eq. 4 reliability of the teacher's pseudo-labels, as in training (HxW in [0, 1])."""
    from stvm.adapt.losses import reliability
    from stvm.adapt.metric import distance_to_prediction

    params = nets.meta.get("params", {})
    if "alpha" not in params or "beta" not in params:
        raise StvmError(None, "adapted checkpoint has a metric head but no params.alpha/beta")
    use_teacher = nets.teacher is not None and params.get("metric_input", "teacher") == "teacher"
    net = nets.teacher if use_teacher else nets.model
    pseudo = probs(nets.teacher or nets.model, x).argmax(0)[None]
    dist = nets.metric.distances(nets.metric(net.features(x)))
    w = reliability(distance_to_prediction(dist, pseudo), float(params["alpha"]), float(params["beta"]))
    return w[0].float().cpu().numpy()


def to_u8(values: np.ndarray) -> np.ndarray:
    """A [0, 1] map as the 8-bit image written to disk (x255, rounded, clipped)."""
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
