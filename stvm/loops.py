"""What both training loops share (``train_source`` and ``adapt``): batches, optimiser, schedule,
log windows and resumable checkpoints.

Why its own module: the two loops are stages side by side; neither imports the other. Both are
resumable the same way: a batch is a pure function of (seed, iteration), the learning rate a pure
function of the iteration, and a checkpoint holds the weights, the iteration, every RNG state and a
fingerprint of the run (params, seed, inputs), so a resumed run replays exactly what an
uninterrupted one would have done, and a checkpoint of another run is never resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stvm.data.datasets import CropDataset, IterationBatches
from stvm.io import load_checkpoint, save_checkpoint
from stvm.runtime import check_finite, poly_lr, resumable, rng_state


def make_loader(dataset: CropDataset, sampler: IterationBatches, workers: int) -> torch.utils.data.DataLoader:
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
