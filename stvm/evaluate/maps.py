"""Inspection maps of an evaluated checkpoint: what the report's qualitative panel draws.

For the first ``evaluate.maps`` target val images (sorted by name), at the evaluation input size,
single scale (what the network itself outputs, not the MST fusion), written by the evaluate stage
into its output folder so that the report reads files and never rebuilds a network::

    maps/<stem>_prediction.png   class index in the model's protocol (argmax of the softmax)
    maps/<stem>_confidence.png   max softmax of the teacher (the network's own without one), x255
    maps/<stem>_reliability.png  Eq. 4 reliability of the teacher's pseudo-labels, x255, when the
                                 checkpoint carries the metric network M

The maps come from ``stvm.evaluate.nets`` (the same code as ``stvm predict --maps``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from stvm.data.images import normalize, read_rgb, write_png
from stvm.evaluate.nets import LoadedNets, confidence_map, probs, reliability_map, to_u8

KINDS = ("prediction", "confidence", "reliability")


def map_path(folder: Path, stem: str, kind: str) -> Path:
    """Where the evaluate stage writes map ``kind`` of image ``stem`` (the report reads it there)."""
    return folder / "maps" / f"{stem}_{kind}.png"


def write_maps(folder: Path, nets: LoadedNets, images: Path, n: int, input_size: tuple[int, int],
               device: torch.device) -> dict[str, Any]:
    """Write the maps of the first ``n`` images of ``images`` under ``folder/maps``; return what was
    written (image stems, whether a reliability map exists, whose confidence it is)."""
    (folder / "maps").mkdir(parents=True, exist_ok=True)
    stems = sorted(p.stem for p in Path(images).glob("*.png"))[:n]
    if not stems:
        return {"images": []}
    for stem in stems:
        rgb = read_rgb(Path(images) / f"{stem}.png")
        if rgb.shape[1::-1] != tuple(input_size):
            rgb = cv2.resize(rgb, tuple(input_size), interpolation=cv2.INTER_LINEAR)
        x = normalize(rgb)[None].to(device)
        write_png(map_path(folder, stem, "prediction"), probs(nets.model, x).argmax(0).cpu().numpy().astype(np.uint8))
        write_png(map_path(folder, stem, "confidence"), to_u8(confidence_map(nets, x)))
        if nets.metric is not None:
            write_png(map_path(folder, stem, "reliability"), to_u8(reliability_map(nets, x)))
    return {"images": stems, "input_size": list(input_size), "reliability": nets.metric is not None,
            "confidence_of": "teacher" if nets.teacher is not None else "network"}
