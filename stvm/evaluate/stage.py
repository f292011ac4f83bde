"""The ``evaluate`` stage: load a model, score it on the prepared target val set, write metrics.json.

The numbers themselves come from ``stvm.evaluate.metrics`` (the one implementation); this module
only wires paths, the model checkpoint and provenance (every open choice is written next to the
numbers, so a metrics file is self-describing).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from stvm.config import EvaluateParams, section_dict
from stvm.evaluate.inference import evaluate_folder
from stvm.evaluate.metrics import flatten_metrics
from stvm.io import write_json
from stvm.models.weights import load_model_checkpoint
from stvm.runtime import resolve_device


def evaluate_stage(
    cfg: EvaluateParams,
    *,
    model_path: Path,
    images: Path,
    labels: Path,
    out: Path,
    device: str,
    input_size: tuple[int, int],
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model_path`` on (images, labels); write ``out/metrics.json`` and return it."""
    t0 = time.perf_counter()
    dev = resolve_device(device)
    model, meta = load_model_checkpoint(model_path)
    model.to(dev)
    protocol = int(meta.get("protocol", 19))
    pred_dir = out / "pred" if cfg.save_predictions else None
    color_dir = out / "color" if cfg.save_predictions else None
    scores, confusion = evaluate_folder(
        model, images, labels, protocol=protocol, input_size=input_size, scales=cfg.scales, flip=cfg.flip,
        device=dev, pred_dir=pred_dir, color_dir=color_dir, show_progress=show_progress,
    )
    extra = _metric_space(model, meta, images, labels, dev, input_size, cfg.silhouette_pixels)
    metrics = {
        **flatten_metrics(scores),
        **extra,
        "protocol": protocol,
        "evaluation": {
            **section_dict(cfg),
            "mst": len(cfg.scales) > 1 or cfg.flip,
            "input_size": list(input_size),
            "scoring_resolution": "label resolution (predictions upsampled bilinearly)",
            "wall_seconds": round(time.perf_counter() - t0, 2),
        },
        "model": {k: v for k, v in meta.items() if k not in ("params", "metric_head", "teacher")},
    }
    write_json(out / "confusion.json", {"protocol": protocol, "matrix": np.asarray(confusion).astype(int).tolist()})
    write_json(out / "metrics.json", metrics)
    return metrics


def _metric_space(model, meta: dict, images: Path, labels: Path, dev, input_size, max_pixels: int) -> dict[str, Any]:
    """Silhouette of the metric network's features (Table VII) when the checkpoint carries one."""
    if "metric_head" not in meta.get("extras", []):
        return {}
    from stvm.evaluate.silhouette import silhouette_for_checkpoint

    return silhouette_for_checkpoint(model, meta, images, labels, dev, input_size, max_pixels)
