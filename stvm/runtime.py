"""Seeding, device/autocast setup and where a stage ran (RNG-state capture, checkpoints and the
schedule: ``stvm.training``; DDP: ``stvm.distributed``; progress: ``stvm.progress``)."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from stvm.distributed import dist_info
from stvm.errors import StvmError


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a user error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StvmError(None, "common.device: cuda requested but no CUDA device is available")
    if device.startswith("cuda") and dist_info().world_size > 1:
        return torch.device("cuda", dist_info().local_rank)
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that CPU runs with the same seed give the same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (no loss scaling needed), a no-op on CPU (keeps CPU runs exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Measure wall time of a block into ``result['seconds']``."""
    result: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - t0


def interpreter() -> dict[str, Any]:
    """Where a stage ran, for its ``*_info.json``: the Python executable and whether it ran in a
    container (``docker``, ``apptainer`` or None). Apptainer/Singularity marks its containers with
    ``/.singularity.d`` and ``APPTAINER_CONTAINER``/``SINGULARITY_CONTAINER``; Docker with ``/.dockerenv``."""
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER") or os.path.isdir("/.singularity.d"):
        container = "apptainer"
    elif os.path.exists("/.dockerenv"):
        container = "docker"
    else:
        container = None
    return {"python": sys.executable, "container": container}
