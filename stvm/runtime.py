"""Seeding, device/autocast/DDP setup and RNG-state capture (progress: ``stvm.progress``)."""

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


def rng_state() -> dict[str, Any]:
    """Every RNG state a resumed run must restore (as tensors, so weights_only loading works)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.tensor(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": torch.tensor(np.random.get_state()[2]),
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0))
    random.setstate((3, tuple(int(x) for x in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


class NonFiniteGuard:
    """Remember, on the device, the first iteration whose loss was NaN/inf (no per-step host sync).

    ``raise_if_bad`` (called at log time, where we sync anyway) stops the run with an error naming it.
    """

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def check(self, loss: torch.Tensor, it: int) -> None:
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, it), self.first_bad)

    def raise_if_bad(self, stage: str) -> None:
        first = int(self.first_bad)
        if first >= 0:
            raise StvmError(None, f"{stage}: loss became NaN/inf at iteration {first} (lower the learning rate?)")


def check_finite(state: dict[str, Any], path: Any) -> None:
    """Refuse to write weights holding NaN/inf (a diverged run must not leave a resumable file)."""
    floats = {k: v for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()}
    if not floats or bool(torch.stack([torch.isfinite(v).all() for v in floats.values()]).all()):
        return
    bad = [k for k, v in floats.items() if not bool(torch.isfinite(v).all())]
    raise StvmError(path, f"not written: {len(bad)} weight tensors hold NaN/inf (first: {bad[0]}); "
                          "the run diverged (lower the learning rate?)")


def fingerprint(obj: Any) -> str:
    """Stable hash of a JSON-able description of a run (params, seed, inputs) for safe resume."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resumable(state: dict[str, Any] | None, expected: str, path: Any, total: int) -> bool:
    """True when an *unfinished* checkpoint belongs to this run (same params, seed and inputs).

    A finished checkpoint is never resumed: a stage that runs again after completing (forced, or
    because its code changed) must recompute. A stale one is ignored loudly.
    """
    if state is None or int(state.get("iteration", 0)) >= total:
        return False
    if state.get("fingerprint") != expected:
        print(f"{path}: checkpoint was written with other params or seed; starting from scratch", file=sys.stderr)
        return False
    return True


def poly_lr(base: float, it: int, total: int, power: float) -> float:
    """Poly decay (1 - it/total)^power, the DeepLab schedule used by the paper for every optimiser."""
    return base * (1.0 - min(it, total) / total) ** power


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
