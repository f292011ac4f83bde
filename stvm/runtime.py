"""Seeding, device/autocast/DDP setup and where a stage ran (RNG-state capture, checkpoints and the
schedule: ``stvm.training``; progress: ``stvm.progress``)."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

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


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank/world size from torchrun's environment (1 process when not launched by torchrun)."""
    return DistInfo(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group (nccl on GPU, gloo on CPU) when WORLD_SIZE > 1."""
    info = dist_info()
    if info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
    return info


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
