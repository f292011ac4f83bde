"""What both training loops share (``train_source`` and ``adapt``): RNG states, checkpoint files,
resume, the optimiser and its schedule, batches, log windows and snapshots.

Why one module: the two loops are stages side by side; neither imports the other. Both are
resumable the same way: a batch is a pure function of (seed, iteration), the learning rate a pure
function of the iteration, and a checkpoint holds the weights, the iteration, every RNG state and a
fingerprint of the run (params, seed, inputs), so a resumed run replays exactly what an
uninterrupted one would have done, and a checkpoint of another run is never resumed. Checkpoint
files are written atomically and read ``weights_only`` (``models.weights`` writes its model files
with the same two functions), so this module sits with the foundations and imports nothing above them.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvm.errors import StvmError
from stvm.io import atomic_path


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


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary name, then rename: a kill never leaves a truncated checkpoint."""
    # Serialise to memory first: torch.save names the zip's inner folder after the file, and the
    # temporary name is random, so saving straight to it would make identical models differ in bytes.
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _load_problem(err: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in one line that never
    repeats torch's advice to load it with ``weights_only=False`` (which would run its code)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        reason = next((ln.removeprefix("WeightsUnpickler error:").strip() for ln in lines[1:]
                       if "weights_only" not in ln and not ln.startswith("Check the documentation")), "")
        if "global" in reason.lower():  # an object to import and call: it could run code
            return (f"cannot load as a weights-only checkpoint: it is not a plain-tensor checkpoint "
                    f"({reason[:200].rstrip('.')}) and is refused for safety (loading it could run code)")
        lines = [reason or "unsupported content"]
    first = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return f"cannot load as a weights-only checkpoint: not a PyTorch checkpoint, or a corrupt one ({first[:200]})"


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (never unpickle user files)."""
    path = Path(path)
    if not path.is_file():
        raise StvmError(path, "is a directory, not a checkpoint file" if path.is_dir() else "checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as err:
        raise StvmError(path, f"cannot read checkpoint ({err.strerror or err})") from None
    except Exception as err:  # noqa: BLE001 - any failure to unpickle these bytes is this file's
        raise StvmError(path, _load_problem(err)) from None
    if not isinstance(obj, dict):
        raise StvmError(path, f"expected a dict checkpoint, got {type(obj).__name__}")
    return obj


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


def make_loader(dataset: torch.utils.data.Dataset, sampler: torch.utils.data.Sampler,
                workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader driven by the iteration-indexed batch sampler (no shuffle state of its own)."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        # its own generator: creating the iterator must not draw from the global RNG, or a resumed
        # run's dropout masks would differ from an uninterrupted run's
        generator=torch.Generator().manual_seed(0),
    )


def sgd_for(model: torch.nn.Module, lr: float, lr_head: float, momentum: float, wd: float,
            nesterov: bool) -> torch.optim.SGD:
    """SGD with one group for the features F and one for the classifier C (at ``lr_head``); each
    group remembers its ``base_lr`` for the poly schedule."""
    f_params, c_params = model.param_groups()
    groups = [{"params": f_params, "lr": lr, "base_lr": lr}, {"params": c_params, "lr": lr_head, "base_lr": lr_head}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=wd, nesterov=nesterov)


def set_poly_lr(opt: torch.optim.Optimizer, it: int, total: int, power: float) -> float:
    """Apply the poly schedule to every group; return the first group's lr (for logging)."""
    for g in opt.param_groups:
        g["lr"] = poly_lr(g["base_lr"], it, total, power)
    return opt.param_groups[0]["lr"]


def log_due(done: int, every: int, total: int) -> bool:
    """A log row after every ``every`` iterations and after the last one."""
    return done % every == 0 or done == total


def window_length(done: int, every: int, since: int) -> int:
    """Iterations summed in the log row written at ``done``: those since the previous row, or since
    ``since`` (where a resumed run started summing) when that is later."""
    return done - max(since, (done - 1) // every * every)


def resume_state(path: Path, run_id: str, total: int, map_location: str = "cpu") -> dict[str, Any] | None:
    """This run's unfinished checkpoint at ``path``, or None (none there, finished, or another run's)."""
    state = load_checkpoint(path, map_location=map_location) if path.exists() else None
    return state if resumable(state, run_id, path, total) else None


def save_state(path: Path, weights: dict[str, Any], payload: dict[str, Any], it: int, wall: float,
               run_id: str) -> None:
    """Atomically write a resumable checkpoint: ``payload`` plus the iteration, RNG states, wall
    time and run fingerprint; refused (StvmError) when ``weights`` hold NaN/inf."""
    check_finite(weights, path)
    save_checkpoint({**payload, "iteration": it, "rng": rng_state(), "wall_seconds": wall, "fingerprint": run_id},
                    path)


SNAPSHOT_DIR = "snapshots"


def snapshot_path(out: Path, it: int) -> Path:
    """Where a loop writes its model at iteration ``it`` (``out/snapshots/it000500.pt``)."""
    return out / SNAPSHOT_DIR / f"it{it:06d}.pt"


def snapshot_iteration(path: Path) -> int | None:
    """The iteration of a snapshot file name, or None for a file no loop wrote."""
    stem = path.name.removesuffix(".pt")
    digits = stem[2:]
    ok = path.suffix == ".pt" and stem.startswith("it") and len(digits) == 6 and digits.isdigit()
    return int(digits) if ok else None


def reset_snapshots(out: Path, start: int) -> None:
    """The snapshots folder as a run starting at ``start`` needs it: made when missing (so the DAG can
    list it as an output of every run, empty without ``snapshots``), and without the snapshots past
    ``start`` (all of them on a fresh start), so none of another run or of a lost stretch is left
    beside this run's; only files named as this loop names them are removed."""
    folder = out / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        it = snapshot_iteration(f)
        if it is not None and it > start and f.is_file():
            f.unlink()
