"""The ``evaluate`` stage: load a model, score it on the prepared target val set, write metrics.json.

The numbers themselves come from ``stvm.evaluate.metrics`` (the one implementation); this module
only wires paths, the model checkpoint and provenance (every open choice is written next to the
numbers, in ``eval_info.json``, so an evaluation folder is self-describing).

The input size is the prepared images' own size, checked against the size the model records it
was trained at (a mismatch is an error; ``input_size`` is the stated override). The output folder
(``metrics.json``, ``confusion.json``, the panel's ``maps/``, predictions) is written whole into a temporary folder and
renamed, so a reader never sees a new confusion matrix beside old metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from stvm.config import EvaluateParams, section_dict
from stvm.data.datasets import prepared_size
from stvm.errors import StvmError
from stvm.evaluate.inference import evaluate_folder
from stvm.evaluate.maps import write_maps
from stvm.evaluate.metrics import flatten_metrics
from stvm.evaluate.nets import nets_from
from stvm.io import atomic_dir, prepare_out_dir, refuse_foreign, write_json
from stvm.models.weights import load_model_checkpoint
from stvm.runtime import interpreter, resolve_device
from stvm.threads import current_threads
from stvm.training import SNAPSHOT_DIR, snapshot_iteration

OWN = ("metrics.json", "scores.json", "eval_info.json", "confusion.json", "curve.json", "maps/*", "pred/*.png",
       "color/*.png")  # everything evaluate writes


def evaluate_stage(
    cfg: EvaluateParams,
    *,
    model_path: Path,
    images: Path,
    labels: Path,
    out: Path,
    device: str,
    input_size: tuple[int, int] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model_path`` on (images, labels); write ``out/metrics.json`` (headline numbers only, for
    ``dvc metrics``), ``scores.json`` (every number), ``eval_info.json`` (provenance, open choices) and
    ``confusion.json``; return them merged.

    ``input_size`` (W, H) overrides the input size, which is otherwise the prepared images' own.
    """
    t0 = time.perf_counter()
    _check_out(out, [model_path, images, labels])
    dev = resolve_device(device)
    model, meta = load_model_checkpoint(model_path)
    model.to(dev)
    protocol = int(meta.get("protocol", 19))
    input_size, size_from = _input_size(model_path, meta, images, input_size)
    with atomic_dir(out, overwrite=True) as tmp:
        metrics = _evaluate_into(tmp, cfg, model, meta, protocol, images, labels, dev, input_size, show_progress)
        metrics["evaluation"]["input_size_from"] = size_from
        metrics["evaluation"]["wall_seconds"] = round(time.perf_counter() - t0, 2)
        write_json(tmp / "confusion.json", metrics.pop("_confusion"))
        _write_split(tmp, metrics)
        write_json(tmp / "maps" / "index.json", write_maps(tmp, nets_from(model, meta, dev), images, cfg.maps, input_size, dev))
        write_json(tmp / "curve.json", _snapshot_curve(cfg, model_path, meta, metrics, images, labels, dev, input_size,
                                                       show_progress))
    return metrics


def _snapshot_curve(cfg: EvaluateParams, model_path: Path, meta: dict, metrics: dict[str, Any], images: Path,
                    labels: Path, dev, input_size: tuple[int, int], show_progress: bool) -> dict[str, Any]:
    """mIoU of every snapshot beside ``model_path`` (``snapshots/it<N>.pt``) and of the model itself, in
    iteration order: the learning curve (no points without snapshots: the file always exists, so the
    DAG can list it). Scored like the model (same scales and flip); the loop that wrote them never
    reads these numbers back."""
    folder = model_path.parent / SNAPSHOT_DIR
    files = sorted((it, f) for f in (folder.iterdir() if folder.is_dir() else []) if (it := snapshot_iteration(f)) is not None)
    final_it = int(meta.get("iteration", (meta.get("params") or {}).get("iterations", 0)))
    points = {final_it: metrics["miou"]} if files else {}
    for it, f in files:
        net, snap_meta = load_model_checkpoint(f)
        scores, _ = evaluate_folder(net.to(dev), images, labels, protocol=int(snap_meta.get("protocol", 19)),
                                    input_size=input_size, scales=cfg.scales, flip=cfg.flip, device=dev,
                                    show_progress=show_progress, batch_size=cfg.batch_size)
        points[it] = flatten_metrics(scores)["miou"]
    return {"metric": "miou", "model": str(model_path), "final_iteration": final_it,
            "points": [{"iteration": it, "miou": points[it]} for it in sorted(points)]}


HEADLINE = ("miou", "miou13", "pixel_acc", "silhouette/class_mean", "silhouette/overall_mean")


def _write_split(folder: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``: the headline numbers only (what ``dvc metrics show`` lists, one short row per
    evaluation); ``scores.json``: every number (per-class IoU, the 19-class-convention means, sample
    counts); ``eval_info.json``: everything else (protocol, evaluation choices, model provenance)."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "protocol"}
    write_json(folder / "scores.json", numbers)
    write_json(folder / "eval_info.json", {k: v for k, v in metrics.items() if k not in numbers})
    write_json(folder / "metrics.json", {k: v for k, v in numbers.items() if k in HEADLINE})


def _check_out(out: Path, inputs: list[Path]) -> None:
    """``out`` is replaced as a whole: refuse one that overlaps an input or holds a file evaluate
    does not write (``OWN``)."""
    prepare_out_dir(out, inputs)
    refuse_foreign(out, OWN, "evaluate replaces its output folder as a whole, so give it a folder of its own")


def _input_size(model_path: Path, meta: dict, images: Path,
                override: tuple[int, int] | None) -> tuple[tuple[int, int], str]:
    """The input size and where it came from: the override, else the prepared images' size, which
    must be the one the model records it was trained at."""
    if override is not None:
        w, h = override
        if not (8 <= w <= 8192 and 8 <= h <= 8192):
            raise StvmError(None, f"--input-size: expected sides in [8, 8192], got {w}x{h}")
        return (w, h), "override"
    data = prepared_size(images)
    trained = meta.get("input_size")
    if trained is not None and not (isinstance(trained, (list, tuple)) and len(trained) == 2
                                    and all(isinstance(v, int) and not isinstance(v, bool) for v in trained)):
        raise StvmError(model_path, f"corrupt checkpoint: input_size {str(trained)[:40]} (expected [width, height])")
    if trained is not None and tuple(trained) != data:
        raise StvmError(images, f"images are {data[0]}x{data[1]} but {model_path} was trained at "
                                f"{trained[0]}x{trained[1]} (prepared at another size?); prepare the data at the "
                                "model's size, or pass --input-size WxH to override")
    return data, "prepared images" + (" (= the model's training size)" if trained is not None else "")


def _evaluate_into(tmp: Path, cfg: EvaluateParams, model, meta: dict, protocol: int, images: Path, labels: Path,
                   dev, input_size: tuple[int, int], show_progress: bool) -> dict[str, Any]:
    """Score the model, writing predictions under ``tmp``; the metrics dict (with the confusion)."""
    pred_dir = tmp / "pred" if cfg.save_predictions else None
    color_dir = tmp / "color" if cfg.save_predictions else None
    scores, confusion = evaluate_folder(
        model, images, labels, protocol=protocol, input_size=input_size, scales=cfg.scales, flip=cfg.flip,
        device=dev, pred_dir=pred_dir, color_dir=color_dir, show_progress=show_progress, batch_size=cfg.batch_size,
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
            "device": str(dev),
            "threads": current_threads(),
            **interpreter(),
        },
        "model": {k: v for k, v in meta.items() if k not in ("params", "metric_head", "teacher")},
        "_confusion": {"protocol": protocol, "matrix": np.asarray(confusion).astype(int).tolist()},
    }
    return metrics


def _metric_space(model, meta: dict, images: Path, labels: Path, dev, input_size, max_pixels: int) -> dict[str, Any]:
    """Silhouette of the metric network's features (Table VII) when the checkpoint carries one."""
    if "metric_head" not in meta.get("extras", []):
        return {}
    from stvm.evaluate.silhouette import silhouette_for_checkpoint

    return silhouette_for_checkpoint(model, meta, images, labels, dev, input_size, max_pixels)
