"""``train_source``: supervised training of the source model, a plain loop read top to bottom.

Shape (torchvision references / nanoGPT): build model and optimiser -> resume from the last
checkpoint if one exists -> for each iteration: batch, forward, loss, backward, step, log ->
periodic atomic checkpoint -> final model + metrics. The learning rate is a pure function of the
iteration (poly decay), and every batch is a pure function of (seed, iteration), so a resumed run
replays exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from stvm.config import TrainSourceParams, section_dict
from stvm.data.datasets import CropDataset, IterationBatches, prepared_size
from stvm.data.images import to_float
from stvm.data.labels import IGNORE, PROTOCOL_CLASSES, protocol_lut
from stvm.digest import inputs_digest
from stvm.io import load_checkpoint, prepare_out_dir, save_checkpoint, write_json
from stvm.models.deeplab import SegModel, build_model
from stvm.models.weights import init_backbone, save_model_checkpoint
from stvm.plots import PlotWriter
from stvm.progress import ProgressBar
from stvm.runtime import (
    NonFiniteGuard,
    autocast,
    check_finite,
    fingerprint,
    init_distributed,
    poly_lr,
    resolve_device,
    resumable,
    rng_state,
    seed_everything,
    set_rng_state,
)
from stvm.threads import current_threads


def make_loader(dataset: CropDataset, sampler: IterationBatches, workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader driven by the iteration-indexed batch sampler (no shuffle state of its own)."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        # its own generator: creating the iterator must not draw from the global RNG, or a resumed
        # run's dropout masks would differ from an uninterrupted run's
        generator=torch.Generator().manual_seed(0),
    )


def sgd_for(model: SegModel, lr: float, head_mult: float, momentum: float, wd: float, nesterov: bool) -> torch.optim.SGD:
    """SGD with separate groups for F and C (C at ``head_mult`` times the F learning rate)."""
    f_params, c_params = model.param_groups()
    groups = [{"params": f_params, "lr": lr, "base_lr": lr}, {"params": c_params, "lr": lr * head_mult, "base_lr": lr * head_mult}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=wd, nesterov=nesterov)


def set_poly_lr(opt: torch.optim.Optimizer, it: int, total: int, power: float) -> float:
    """Apply the poly schedule to every group; return the first group's lr (for logging)."""
    for g in opt.param_groups:
        g["lr"] = poly_lr(g["base_lr"], it, total, power)
    return opt.param_groups[0]["lr"]


def train_source(
    cfg: TrainSourceParams,
    *,
    images: Path,
    labels: Path,
    out: Path,
    protocol: int,
    seed: int,
    device: str = "auto",
    num_workers: int = 0,
    stop_after: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train a source model on a prepared labelled split; write ``out/model.pt`` and metrics.

    ``stop_after`` ends the loop early after that many iterations (a simulated kill, for tests);
    calling again resumes from ``out/ckpt/last.pt``.
    """
    dev = resolve_device(device)
    info = init_distributed(dev)
    seed_everything(seed)
    num_classes = len(PROTOCOL_CLASSES[protocol])
    data = CropDataset(images, labels, cfg.crop, cfg.hflip, protocol_lut(protocol))
    if info.is_main:
        prepare_out_dir(out)
    model = build_model(cfg.arch, num_classes)
    init_desc = init_backbone(model, cfg.init)
    model.to(dev)
    opt = sgd_for(model, cfg.lr, cfg.lr_head_mult, cfg.momentum, cfg.weight_decay, nesterov=False)
    ckpt_path = out / "ckpt" / "last.pt"
    start, wall_before = 0, 0.0
    running, window_start = torch.zeros((), device=dev), 0  # loss sum since the last logged row
    digests = inputs_digest([images, labels], cache=ckpt_path.parent / "inputs.json" if info.is_main else None)
    run_id = fingerprint({"params": section_dict(cfg), "seed": seed, "protocol": protocol, "world": info.world_size,
                          "inputs": digests})
    state = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if resumable(state, run_id, ckpt_path, cfg.iterations):
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start, wall_before = int(state["iteration"]), float(state["wall_seconds"])
        if "running_loss" in state:  # the logging window continues where the checkpoint left it
            running = state["running_loss"].to(dev)
        else:  # older checkpoint: the first row averages the iterations run since the resume
            window_start = start
    net: torch.nn.Module = model
    if info.world_size > 1:
        # SyncBN on GPU (batch 2 per rank is too small for per-rank statistics); torch has no CPU SyncBN.
        synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if dev.type == "cuda" else model
        net = DistributedDataParallel(synced)
    sampler = IterationBatches(len(data), cfg.batch_size, seed, start, cfg.iterations, info.rank, info.world_size)
    plots = PlotWriter(out / "plots" / "train.csv", ["iteration", "loss", "lr"], start) if info.is_main else None
    progress = ProgressBar(cfg.iterations, "train_source", show_progress and info.is_main, start=start, unit="it")
    model.train()
    t0, guard = time.perf_counter(), NonFiniteGuard(dev)
    for it, (img, lab, _) in enumerate(make_loader(data, sampler, num_workers), start=start):
        lr = set_poly_lr(opt, it, cfg.iterations, cfg.poly_power)
        x, y = to_float(img.to(dev, non_blocking=True)), lab.to(dev, non_blocking=True)
        with autocast(dev):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.detach()
        guard.check(loss, it + 1)
        done = it + 1
        if done % cfg.log_every == 0 or done == cfg.iterations:
            mean_loss = (running / (done - max(window_start, (done - 1) // cfg.log_every * cfg.log_every))).item()
            running.zero_()
            guard.raise_if_bad("train_source")
            progress.set(done, {"loss": mean_loss, "lr": lr})
            if plots:
                plots.row({"iteration": done, "loss": mean_loss, "lr": lr})
        if info.is_main and (done % cfg.ckpt_every == 0 or done == stop_after):
            guard.raise_if_bad("train_source")  # never checkpoint a diverged run
            _checkpoint(ckpt_path, model, opt, done, wall_before + time.perf_counter() - t0, run_id, running)
        if stop_after is not None and done >= stop_after:
            progress.close()
            return {"stopped_at": done}
    progress.close()
    wall = wall_before + time.perf_counter() - t0
    if info.is_main:
        _checkpoint(ckpt_path, model, opt, cfg.iterations, wall, run_id, running)
        meta = {"protocol": protocol, "init": init_desc, "seed": seed, "params": section_dict(cfg), "stage": "train_source",
                "input_size": list(prepared_size(images))}
        save_model_checkpoint(model, out / "model.pt", **meta)
        metrics = {"iterations": cfg.iterations, "wall_seconds": round(wall, 2)}
        run = {"device": str(dev), "seed": seed, "world_size": info.world_size, "init": init_desc,
               "threads": current_threads()}
        write_json(out / "train_info.json", run)
        write_json(out / "train_metrics.json", metrics)
        return {**metrics, **run}
    return {}


def _checkpoint(path: Path, model: SegModel, opt: torch.optim.Optimizer, it: int, wall: float, run_id: str,
                running: torch.Tensor) -> None:
    state = model.state_dict()
    check_finite(state, path)
    save_checkpoint(
        {"model": state, "optimizer": opt.state_dict(), "iteration": it, "rng": rng_state(),
         "wall_seconds": wall, "fingerprint": run_id, "running_loss": running.detach().clone().cpu()},
        path,
    )
