"""``train_source``: supervised training of the source model, a plain loop read top to bottom.

Shape (torchvision references / nanoGPT): build model and optimiser -> resume from the last
checkpoint if one exists -> for each iteration: batch, forward, loss, backward, step, log ->
periodic atomic checkpoint -> final model + metrics. The learning rate is a pure function of the
iteration (poly decay), and every batch is a pure function of (seed, iteration), so a resumed run
replays exactly what an uninterrupted one would have done. Under ``torchrun`` it distributes,
steps and checkpoints through the same helpers as ``adapt`` (``stvm.distributed``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from stvm import distributed
from stvm.config import TrainSourceParams, section_dict
from stvm.curve_log import CurveLog
from stvm.data.datasets import CropDataset, IterationBatches, prepared_size
from stvm.data.images import to_float
from stvm.data.labels import IGNORE, PROTOCOL_CLASSES, protocol_lut
from stvm.digest import inputs_digest
from stvm.io import prepare_out_dir, write_json
from stvm.models.deeplab import SegModel, build_model
from stvm.models.weights import init_backbone, save_model_checkpoint
from stvm.progress import ProgressBar
from stvm.runtime import autocast, interpreter, resolve_device, seed_everything
from stvm.threads import current_threads
from stvm.training import (
    NonFiniteGuard,
    fingerprint,
    log_due,
    make_loader,
    reset_snapshots,
    resume_state,
    set_poly_lr,
    sgd_for,
    snapshot_path,
    window_length,
)


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
    info = distributed.init_distributed(dev)
    seed_everything(seed)
    num_classes = len(PROTOCOL_CLASSES[protocol])
    data = CropDataset(images, labels, cfg.crop, cfg.hflip, protocol_lut(protocol), key="train_source.crop")
    if info.is_main:
        prepare_out_dir(out, [images, labels])
    model = build_model(cfg.arch, num_classes, cfg.dilations())
    init_desc = init_backbone(model, cfg.init)
    model.to(dev)
    opt = sgd_for(model, cfg.lr, cfg.lr * cfg.lr_head_mult, cfg.momentum, cfg.weight_decay, nesterov=False)
    ckpt_path = out / "ckpt" / "last.pt"
    start, wall_before = 0, 0.0
    running, window_start = torch.zeros((), device=dev), 0  # loss sum since the last logged row
    digests = inputs_digest([images, labels], cache=ckpt_path.parent / "inputs.json" if info.is_main else None)
    run_id = fingerprint({"params": section_dict(cfg), "seed": seed, "protocol": protocol, "world": info.world_size,
                          "inputs": digests})
    if (state := resume_state(ckpt_path, run_id, cfg.iterations)) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        distributed.restore_rng(state, info.rank)
        start, wall_before = int(state["iteration"]), float(state["wall_seconds"])
        if "running_loss" in state:  # the logging window continues where the checkpoint left it
            running = state["running_loss"].to(dev)
        else:  # older checkpoint: the first row averages the iterations run since the resume
            window_start = start
    distributed.check_same_on_all_ranks(start, "the iteration to resume from", "train_source")
    if info.is_main:
        reset_snapshots(out, start)
    meta = {"protocol": protocol, "init": init_desc, "seed": seed, "params": section_dict(cfg), "stage": "train_source",
            "input_size": list(prepared_size(images))}
    model, net = distributed.distribute_model(model, dev)  # (model, model) in one process
    sampler = IterationBatches(len(data), cfg.batch_size, seed, start, cfg.iterations, info.rank, info.world_size)
    plots = CurveLog(out / "plots" / "train.csv", ["iteration", "loss", "lr"], start) if info.is_main else None
    progress = ProgressBar(cfg.iterations, "train_source", show_progress and info.is_main, start=start, unit="it")
    model.train()
    t0, guard = time.perf_counter(), NonFiniteGuard(dev)
    for it, (img, lab, _) in enumerate(make_loader(data, sampler, num_workers), start=start):
        lr = set_poly_lr(opt, it, cfg.iterations, cfg.poly_power)
        x, y = to_float(img.to(dev, non_blocking=True)), lab.to(dev, non_blocking=True)
        with autocast(dev):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE)
        distributed.optimizer_step(opt, loss, buffers=model)  # DDP averaged the gradients
        running += loss.detach()
        guard.check(loss, it + 1)
        done = it + 1
        if log_due(done, cfg.log_every, cfg.iterations):
            mean_loss = (running / window_length(done, cfg.log_every, window_start)).item()
            running.zero_()
            guard.first_bad = distributed.first_bad_over_ranks(guard.first_bad)  # every rank stops together
            guard.raise_if_bad("train_source")
            progress.set(done, {"loss": mean_loss, "lr": lr})
            if plots:
                plots.row({"iteration": done, "loss": mean_loss, "lr": lr})
        if info.is_main and done in cfg.snapshots:
            guard.raise_if_bad("train_source")
            save_model_checkpoint(model, snapshot_path(out, done), **meta, iteration=done)
        if done % cfg.ckpt_every == 0 or done == stop_after:
            guard.first_bad = distributed.first_bad_over_ranks(guard.first_bad)
            guard.raise_if_bad("train_source")  # never checkpoint a diverged run
            _checkpoint(ckpt_path, model, opt, done, wall_before + time.perf_counter() - t0, run_id, running)
        if stop_after is not None and done >= stop_after:
            progress.close()
            return {"stopped_at": done}
    progress.close()
    wall = wall_before + time.perf_counter() - t0
    _checkpoint(ckpt_path, model, opt, cfg.iterations, wall, run_id, running)
    if info.is_main:
        save_model_checkpoint(model, out / "model.pt", **meta)
        metrics = {"iterations": cfg.iterations, "wall_seconds": round(wall, 2)}
        run = {"device": str(dev), "seed": seed, "world_size": info.world_size, "init": init_desc,
               "threads": current_threads(), **interpreter()}
        write_json(out / "train_info.json", run)
        write_json(out / "train_metrics.json", metrics)
        return {**metrics, **run}
    return {}


def _checkpoint(path: Path, model: SegModel, opt: torch.optim.Optimizer, it: int, wall: float, run_id: str,
                running: torch.Tensor) -> None:
    """The resumable checkpoint, written by rank 0 with every rank's RNG state (collective: every
    rank calls it)."""
    state = model.state_dict()
    payload = {"model": state, "optimizer": opt.state_dict(), "running_loss": running.detach().clone().cpu()}
    distributed.save_collectively(path, state, payload, it, wall, run_id)
