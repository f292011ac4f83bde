"""``adapt``: the STvM adaptation loop (and its Table IV variants), read top to bottom.

Shape, as ``train_source``: build the nets from the source model -> resume from this run's last
checkpoint if one exists -> for each iteration: batch of target crops, the poly learning rates,
one ``adapt_step`` (the method: ``stvm.adapt.step``), log -> periodic atomic checkpoint -> the
evaluated network as ``model.pt`` with its metrics. Reads the source checkpoint and target *images*
only: source-free by construction. Multi-process runs (``torchrun``) are handled behind
``stvm.adapt.dist`` (its docstring says what is kept equal on every rank and how).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from stvm import distributed
from stvm.adapt import dist as ddp
from stvm.adapt.step import Nets, adapt_step, build_nets
from stvm.adapt.teacher import relative_drift, student_weight
from stvm.config import AdaptParams, section_dict
from stvm.curve_log import CurveLog
from stvm.data.datasets import CropDataset, IterationBatches, prepared_size
from stvm.digest import inputs_digest, require_file
from stvm.io import prepare_out_dir, write_json
from stvm.models.weights import save_model_checkpoint
from stvm.progress import ProgressBar
from stvm.runtime import interpreter, resolve_device, seed_everything
from stvm.threads import current_threads
from stvm.training import (
    NonFiniteGuard,
    fingerprint,
    log_due,
    make_loader,
    reset_snapshots,
    resume_state,
    set_poly_lr,
    snapshot_path,
    window_length,
)
from stvm.variants import VARIANTS, Variant

PLOT_COLUMNS = ["iteration", "loss", "loss_metric", "lr", "reliability", "metric_fraction", "metric_samples",
                "buffer_fill", "mocm_coverage", "teacher_drift"]


def adapt(
    cfg: AdaptParams,
    *,
    variant: str,
    source_model: Path,
    target_images: Path,
    out: Path,
    seed: int,
    device: str = "auto",
    num_workers: int = 0,
    stop_after: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Adapt ``source_model`` to the unlabeled ``target_images``; write ``out/model.pt`` and metrics.

    Reads the source checkpoint and target *images* only: source-free by construction. Under
    ``torchrun`` every rank calls this; only rank 0 writes and returns the metrics (others ``{}``).
    """
    v = VARIANTS[variant]
    if not v.trains:  # AdaBN is defined by its target statistics, whatever bn_init says
        cfg = dataclasses.replace(cfg, bn_init="target")
    dev = resolve_device(device)
    info = distributed.init_distributed(dev)
    seed_everything(seed)
    data = CropDataset(target_images, None, cfg.crop, hflip=True, lut=None, key="adapt.crop")
    ckpt_path = out / "ckpt" / "last.pt"
    if info.is_main:
        prepare_out_dir(out, [source_model, target_images])  # fails early on an unusable --out; removes a dead run's temporaries
    require_file(source_model)
    digests = inputs_digest([source_model, target_images], ckpt_path.parent / "inputs.json" if info.is_main else None)
    run_id = fingerprint({"params": section_dict(cfg), "variant": variant, "seed": seed,
                          "source": digests[str(source_model)], "inputs": digests[str(target_images)],
                          **({"world": info.world_size} if info.world_size > 1 else {})})
    t_build = time.perf_counter()
    nets, meta, start, wall_before = _ready_nets(cfg, v, source_model, dev, seed, ckpt_path, run_id, target_images)
    meta = {**meta, "input_size": list(prepared_size(target_images))}  # what evaluate checks its input against
    if not v.trains:  # AdaBN: nothing to iterate (the plots file has its header only)
        if not info.is_main:
            return {}
        CurveLog(out / "plots" / "adapt.csv", PLOT_COLUMNS).finish()
        reset_snapshots(out, 0)  # none: no step
        wall = time.perf_counter() - t_build
        return _finish(cfg, variant, v, nets, meta, out, seed, wall, str(dev), iterations=0)
    if info.is_main:
        reset_snapshots(out, start)
    sampler = IterationBatches(len(data), cfg.batch_size, seed, start, cfg.iterations, info.rank, info.world_size)
    plots = CurveLog(out / "plots" / "adapt.csv", PLOT_COLUMNS, start) if info.is_main else None
    progress = ProgressBar(cfg.iterations, f"adapt {variant}", show_progress and info.is_main, start=start, unit="it")
    guard, sums, t0 = NonFiniteGuard(dev), None, time.perf_counter()
    for it, (img, _, _) in enumerate(make_loader(data, sampler, num_workers), start=start):
        lr = set_poly_lr(nets.opt, it, cfg.iterations, cfg.poly_power)
        if nets.opt_metric is not None:
            set_poly_lr(nets.opt_metric, it, cfg.iterations, cfg.poly_power)
        logs = adapt_step(cfg, v, nets, img.to(dev, non_blocking=True), it, seed, info.rank)
        guard.check(logs["loss"] + logs["loss_metric"], it + 1)
        sums = logs if sums is None else {k: sums[k] + logs[k] for k in logs}
        done = it + 1
        if log_due(done, cfg.log_every, cfg.iterations):
            row = _log_row(sums, logs["buffer_fill"], window_length(done, cfg.log_every, start), guard,
                           f"adapt {variant}")
            row["teacher_drift"] = float(relative_drift(nets.teacher, nets.source_params))
            sums = None
            progress.set(done, {"loss": row["loss"], "w": row["reliability"], "lr": lr})
            if plots is not None:
                plots.row({"iteration": done, "lr": lr, **row})
        if done in cfg.snapshots and info.is_main:  # written, never read back: the budget stays source-free
            guard.raise_if_bad(f"adapt {variant}")
            _save_model(snapshot_path(out, done), cfg, variant, v, nets, meta, seed, done)
        if done % cfg.ckpt_every == 0 or done == stop_after:
            guard.first_bad = distributed.first_bad_over_ranks(guard.first_bad)
            guard.raise_if_bad(f"adapt {variant}")  # never checkpoint a diverged run
            _checkpoint(ckpt_path, nets, done, wall_before + time.perf_counter() - t0, run_id)
        if stop_after is not None and done >= stop_after:
            progress.close()
            return {"stopped_at": done}
    progress.close()
    wall = wall_before + time.perf_counter() - t0
    _checkpoint(ckpt_path, nets, cfg.iterations, wall, run_id)
    if not info.is_main:
        return {}
    return _finish(cfg, variant, v, nets, meta, out, seed, wall, str(dev), world=info.world_size)


def _ready_nets(cfg: AdaptParams, v: Variant, source_model: Path, dev: torch.device, seed: int, ckpt_path: Path,
               run_id: str, target_images: Path | None = None) -> tuple[Nets, dict, int, float]:
    """Nets built alike on every rank, resumed from this run's checkpoint, wrapped for DDP under
    torchrun; returns ``(nets, source meta, start iteration, wall seconds so far)``."""
    info = distributed.dist_info()
    nets, meta = build_nets(cfg, v, source_model, dev, seed, target_images)
    if info.world_size > 1:  # from here each rank has its own global RNG stream (e.g. dropout)
        seed_everything(ddp.rank_seed(seed, info.rank))
    start, wall = _resume(nets, ckpt_path, run_id, cfg.iterations, dev, info.rank)
    ddp.distribute(nets, dev)
    return nets, meta, start, wall


def _resume(nets: Nets, path: Path, run_id: str, total: int, dev: torch.device, rank: int) -> tuple[int, float]:
    """Load this run's unfinished checkpoint, if any, on every rank (rank r restores its own RNG);
    returns ``(start iteration, wall seconds so far)``. Ranks must agree (shared file system)."""
    state = resume_state(path, run_id, total, map_location=str(dev))
    start, wall = 0, 0.0
    if state is not None:
        nets.load(state["nets"])
        distributed.restore_rng(state, rank)
        start, wall = int(state["iteration"]), float(state["wall_seconds"])
    distributed.check_same_on_all_ranks(start, "the iteration to resume from", "adapt")
    return start, wall


def _log_row(sums: dict[str, torch.Tensor], fill: torch.Tensor, n: int, guard: NonFiniteGuard,
             stage: str) -> dict[str, float]:
    """Means of the logged scalars over the last ``n`` iterations and over ranks (host syncs and
    collectives at log time only); stops every rank together on a non-finite loss."""
    guard.first_bad = distributed.first_bad_over_ranks(guard.first_bad)
    guard.raise_if_bad(stage)
    if distributed.world_size() > 1:
        keys = list(sums)
        means = distributed.all_reduce_mean(torch.stack([sums[k].float() for k in keys]))
        sums = dict(zip(keys, means.unbind(), strict=True))
    row = {k: float(val) / n for k, val in sums.items()}
    row["buffer_fill"] = float(fill)
    return row


def _checkpoint(path: Path, nets: Nets, it: int, wall: float, run_id: str) -> None:
    """Rank 0 saves everything, with every rank's RNG state under DDP; all ranks return once it is
    on disk (collective: every rank calls it)."""
    distributed.save_collectively(path, nets.student.state_dict(), {"nets": nets.state()}, it, wall, run_id)


def _finish(cfg, variant, v, nets, meta, out, seed, wall, dev, world: int = 1,
            iterations: int | None = None) -> dict[str, Any]:
    """Write the evaluated network as ``out/model.pt`` (with M, for Table VII) and train metrics."""
    _save_model(out / "model.pt", cfg, variant, v, nets, meta, seed, iterations)
    metrics = {"iterations": cfg.iterations if iterations is None else iterations, "wall_seconds": round(wall, 2)}
    choices = open_choices(cfg) | ({"iterations": ADABN_ITERATIONS} if iterations == 0 else {})
    run = {"variant": variant, "source_seed": meta.get("seed"), "device": dev, "seed": seed, "world_size": world,
           "threads": current_threads(), **interpreter(), "choices": choices}
    write_json(out / "adapt_info.json", run)  # provenance and open choices; the metrics file holds numbers only
    write_json(out / "adapt_metrics.json", metrics)
    return {**metrics, **run}


ADABN_ITERATIONS = "0 (AdaBN: BN statistics only, no training step)"


def _save_model(path: Path, cfg: AdaptParams, variant: str, v: Variant, nets: Nets, meta: dict, seed: int,
                iterations: int | None) -> None:
    """The evaluated network (student or teacher), with M and the teacher as extras, at ``path``."""
    net = nets.student if cfg.evaluated_network == "student" or not v.mean_teacher else nets.teacher
    extra: dict[str, Any] = {"extras": []}
    if nets.metric is not None:
        extra["extras"].append("metric_head")
        extra["metric_head"] = nets.metric.state_dict()
    if v.mean_teacher:  # the report shows the teacher's confidence next to the evaluated network
        extra["extras"].append("teacher")
        extra["teacher"] = nets.teacher.state_dict()
    choices = open_choices(cfg) | ({"iterations": ADABN_ITERATIONS} if iterations == 0 else {})
    save_model_checkpoint(
        net, path, protocol=meta.get("protocol", 19), stage="adapt", variant=variant, seed=seed,
        source=meta.get("init", ""), choices=choices, params=section_dict(cfg), input_size=meta.get("input_size"),
        **({"iteration": iterations} if iterations else {}), **extra,
    )


def open_choices(cfg: AdaptParams) -> dict[str, str]:
    """The paper's unstated choices as made for this run, with the reason (written to every metrics file)."""
    return {
        "iterations": f"{cfg.iterations} (paper does not state the budget)",
        "evaluated_network": f"{cfg.evaluated_network} (paper does not say; see README 'Open choices')",
        "metric_input": f"{cfg.metric_input} F features on the clean image, detached (paper III-C: teacher)",
        "ema": f"every {cfg.ema_interval} it, lambda {cfg.ema_lambda} read as '{cfg.ema_reading}' (student weight "
               f"{student_weight(cfg.ema_lambda, cfg.ema_reading):g}); M keeps training on the moving teacher's features",
        "metric_sampling": f"{cfg.metric_sampling}, {cfg.samples_per_class} per class (III-C: 'equal number of "
                           f"samples in each class')",
        "mocm_noise": f"photometric noise {cfg.mocm_noise.replace('_', ' ')} (III-D: before)",
        "mocm_push": f"{cfg.mocm_push} (a batch's own patches are {'never' if cfg.mocm_push == 'after_paste' else 'also'}"
                     f" pasted onto it)",
        "batchnorm": f"init {cfg.bn_init} statistics, {cfg.bn_mode} during adaptation (paper does not say; "
                     f"see README 'Open choices')",
    }

