"""``adapt``: STvM source-free adaptation, and its ablation variants, as one plain loop.

Per iteration (paper Section III): the teacher sees the clean target crop and gives pseudo-labels
for all pixels; with metric learning (MGS), the metric network M embeds the teacher's F features,
is trained with NCA on class-balanced confident pixels (Eq. 1-3), and gives the reliability w of
every pseudo-label (Eq. 4); the student sees the photometrically augmented crop, then MOCM pastes
stored reliable patches (III-D), and is trained with the reliability-weighted CE (Eq. 5). Every
``ema_interval`` iterations the teacher takes an EMA step towards the student (III-B).

Variants (paper Table IV, ``stvm.variants``) switch pieces off; they are booleans of this one
trainer. Without the mean teacher the pseudo-labels come from the student itself (in eval mode) on
the clean image: plain self-training.

Multi-process (``torchrun --nproc_per_node N``, also across nodes): as in ``train_source``, every
rank takes its own ``batch_size`` crops (disjoint slots of the same seed-keyed sequence), so the
global batch is ``batch_size x world size``. Everything that is carried across iterations is kept
identical on every rank (collectives in ``stvm.adapt.dist``; all no-ops in one process, which
therefore computes bit for bit what it did before):

* student: DistributedDataParallel (gradients averaged over ranks, then identical SGD steps). Its
  BatchNorm is SyncBN on GPU (as in ``train_source``; running statistics then agree and rank 0's
  are broadcast after each step to rule out last-bit differences); on CPU (no SyncBN in torch) each
  rank normalises with its own batch and the running statistics are averaged over ranks after each
  step, i.e. the running mean of the global batch.
* teacher: an EMA of identical students (parameters and BN buffers), hence identical; no
  collective needed (the DDP test checks it).
* metric network M and proxies: explicit gradient averaging before Adam. Each rank selects its
  own class-balanced metric samples (Eq. 1 with the shared thresholds) and the per-rank NCA mean
  is scaled by ``n_rank * world / n_total``, so the averaged gradient is that of the NCA mean over
  all ranks' samples. M's BN buffers (DeepLabV3 heads) are handled as the student's.
* class thresholds: the stride-8 confidences and predictions of all ranks are all-gathered and
  every rank folds the percentiles of the *global* batch into tau (exact, small: B*h*w values).
* MOCM buffers: the clean images, pseudo-labels, reliability (float16, as stored) and distance
  maps of all ranks are all-gathered, and every rank pushes the same candidates in rank order, so
  the FIFO buffers stay identical. Pasting uses the rank's own generator: ranks paste different
  patches (as different images of one big batch would get).
* randomness: the per-iteration generator (photometric noise, metric sampling, pasting) is seeded
  from ``(seed, iteration, rank)`` (rank 0: the single-process seed), the global RNG from
  ``(seed, rank)`` after the nets are built; checkpoints store every rank's global RNG state, so a
  resumed run equals an uninterrupted one on the same world size (the world size is part of the
  run fingerprint when it exceeds 1).
* logging: the per-rank sums of the logged scalars are averaged over ranks at log time only; the
  first non-finite iteration is reduced too, so every rank stops together. Only rank 0 writes
  (checkpoint, plots CSV, model.pt, adapt_metrics.json, progress line); the others wait at a
  barrier after each checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from stvm.adapt import dist as ddp
from stvm.adapt.augment import photometric
from stvm.adapt.batchnorm import freeze_bn, reestimate_bn
from stvm.adapt.classmix import PatchBuffers, to_uint8
from stvm.adapt.losses import nca_loss, reliability, weighted_ce
from stvm.adapt.metric import (
    ClassThresholds,
    MetricHead,
    distance_to_prediction,
    gather_pixels,
    select_metric_samples,
)
from stvm.adapt.teacher import ema_update, relative_drift, should_update, student_weight
from stvm.config import AdaptParams, section_dict
from stvm.data.datasets import CropDataset, IterationBatches, list_stems, prepared_size
from stvm.data.images import normalize, read_rgb, standardize
from stvm.digest import inputs_digest, require_file
from stvm.io import prepare_out_dir, write_json
from stvm.loops import log_due, make_loader, resume_state, save_state, set_poly_lr, sgd_for, window_length
from stvm.models.deeplab import build_head
from stvm.models.weights import load_model_checkpoint, save_model_checkpoint
from stvm.plots import PlotWriter
from stvm.progress import ProgressBar
from stvm.runtime import (
    NonFiniteGuard,
    autocast,
    dist_info,
    fingerprint,
    init_distributed,
    resolve_device,
    seed_everything,
    set_rng_state,
)
from stvm.threads import current_threads
from stvm.variants import VARIANTS, Variant

PLOT_COLUMNS = ["iteration", "loss", "loss_metric", "lr", "reliability", "metric_fraction", "metric_samples",
                "buffer_fill", "mocm_coverage", "teacher_drift"]


@dataclass
class Nets:
    """Everything that trains or is carried across iterations (all of it goes into the checkpoint)."""

    student: torch.nn.Module
    teacher: torch.nn.Module
    opt: torch.optim.Optimizer
    metric: MetricHead | None = None
    opt_metric: torch.optim.Optimizer | None = None
    thresholds: ClassThresholds | None = None
    buffers: PatchBuffers | None = None
    train_forward: torch.nn.Module | None = None  # the student's DDP wrapper under torchrun (not saved)
    source_params: list[torch.Tensor] | None = None  # the source model's weights (teacher drift; not saved)

    def state(self) -> dict[str, Any]:
        parts = {"student": self.student, "teacher": self.teacher, "opt": self.opt, "metric": self.metric,
                 "opt_metric": self.opt_metric, "thresholds": self.thresholds, "buffers": self.buffers}
        return {k: v.state_dict() for k, v in parts.items() if v is not None}

    def load(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            getattr(self, k).load_state_dict(v)


def build_nets(cfg: AdaptParams, v: Variant, source_model: Path, dev: torch.device, seed: int,
               target_images: Path | None = None) -> tuple[Nets, dict]:
    """Student and teacher from the source model (with target BN statistics when ``bn_init`` is
    ``target``: then ``target_images`` is required); M, proxies, thresholds and buffers when on."""
    student, meta = load_model_checkpoint(source_model)
    student.to(dev).train()
    if cfg.bn_init == "target":
        if target_images is None:
            raise ValueError("bn_init 'target' needs the target images")
        reestimate_bn(student, _target_batches(target_images, cfg.batch_size, dev))
    teacher = copy.deepcopy(student).eval() if v.mean_teacher else student
    opt = sgd_for(student, cfg.lr, cfg.lr_head, cfg.momentum, cfg.weight_decay, nesterov=True)
    nets = Nets(student, teacher, opt, source_params=[q.detach().float().clone() for q in student.parameters()])
    if v.trains_metric(cfg.metric_probe):
        g = torch.Generator().manual_seed(seed)
        head = build_head(meta["arch"], student.feature_channels, cfg.n_f)
        nets.metric = MetricHead(head, student.num_classes, cfg.n_f, generator=g).to(dev)
        nets.opt_metric = torch.optim.Adam(nets.metric.parameters(), lr=cfg.lr_metric)
        for group in nets.opt_metric.param_groups:
            group["base_lr"] = cfg.lr_metric
        nets.thresholds = ClassThresholds(student.num_classes, cfg.threshold_momentum).to(dev)
    if v.mocm:
        nets.buffers = PatchBuffers(student.num_classes, cfg.buffer_size, cfg.crop, cfg.crop, device=dev)
    return nets, meta


def _target_batches(images: Path, batch_size: int, dev: torch.device):
    """Whole prepared target images, normalised, in name order (for the BN re-estimation)."""
    stems = list_stems(images)
    for i in range(0, len(stems), batch_size):
        yield torch.stack([normalize(read_rgb(images / f"{s}.png")) for s in stems[i : i + batch_size]]).to(dev)


METRIC_STREAM = 2**52  # offset of the metric-sampling generator's seed (ranks below 4096 never collide)


def adapt_step(cfg: AdaptParams, v: Variant, nets: Nets, img_u8: torch.Tensor, it: int, seed: int,
               rank: int = 0) -> dict[str, torch.Tensor]:
    """One STvM iteration on a batch of clean target crops (uint8); returns device scalars to log.

    Phases, as III-B..D order them: teacher pseudo-labels on the clean crop; M trained and the
    reliability w read (MGS); photometric noise, then MOCM pastes from the buffers as they were
    before this batch; the reliability-weighted CE step (Eq. 5); this batch's reliable patches
    pushed; the teacher's EMA step. Two generators keyed on (seed, iteration, rank): one for the
    student's input (noise, pastes), one for M's samples, so a variant with or without M sees the
    same noise.
    """
    dev = img_u8.device
    key = ddp.rank_seed(seed * 1_000_003 + it, rank)
    gen = torch.Generator(device=dev).manual_seed(key)
    x01 = img_u8.float() / 255.0
    # Teacher path: pseudo-labels for every pixel from the clean image (no gradient).
    nets.teacher.eval()
    with torch.no_grad(), autocast(dev):
        feats = nets.teacher.features(standardize(x01))
        low = nets.teacher.classify(feats).float()
    logits = F.interpolate(low, size=x01.shape[-2:], mode="bilinear", align_corners=False)
    pseudo = logits.argmax(1)
    weight = torch.ones_like(pseudo, dtype=torch.float32)
    zero = torch.zeros((), device=dev)
    log = {"loss_metric": zero, "metric_fraction": zero, "metric_samples": zero}
    candidates = None
    if nets.metric is not None:
        if cfg.metric_input == "student":  # open choice: M on the student's current F features instead
            with torch.no_grad(), autocast(dev):
                feats = nets.student.features(standardize(x01))
        gen_m = torch.Generator(device=dev).manual_seed(key + METRIC_STREAM)
        w, d, log = metric_step(cfg, nets, feats.float(), low, pseudo, gen_m)
        if v.metric:  # ST_MT's probe M is trained and logged, never used
            weight = w
            candidates = _all_candidates(x01, pseudo, weight, d, nets.student.num_classes)
    # Student path: photometric noise, then MOCM, then the reliability-weighted CE (Eq. 5).
    noise_first = v.augment and (nets.buffers is None or cfg.mocm_noise == "before_paste")
    xs = photometric(x01, gen) if noise_first else x01
    pseudo_s, weight_s, coverage = pseudo, weight, zero
    if nets.buffers is not None:
        if cfg.mocm_push == "before_paste":
            nets.buffers.push(*candidates, cfg.tau_mocm)
        xs, pseudo_s, weight_s, pasted = nets.buffers.paste(xs, pseudo, weight, cfg.n_mocm, gen)
        coverage = pasted.float().mean()
        if v.augment and not noise_first:
            xs = photometric(xs, gen)
    nets.student.train()
    if cfg.bn_mode == "frozen":
        freeze_bn(nets.student)
    with autocast(dev):
        out = (nets.train_forward or nets.student)(standardize(xs))
    loss = weighted_ce(out.float(), pseudo_s, weight_s)
    nets.opt.zero_grad(set_to_none=True)
    loss.backward()
    nets.opt.step()
    ddp.sync_buffers(nets.student, average=dev.type != "cuda")
    if nets.buffers is not None and cfg.mocm_push == "after_paste":
        nets.buffers.push(*candidates, cfg.tau_mocm)
    if v.mean_teacher and should_update(it + 1, cfg.ema_interval):
        ema_update(nets.teacher, nets.student, student_weight(cfg.ema_lambda, cfg.ema_reading))
    fill = nets.buffers.fill_fraction() if nets.buffers is not None else zero
    return {"loss": loss.detach(), **log, "reliability": weight.mean(), "buffer_fill": fill,
            "mocm_coverage": coverage}


def metric_step(cfg: AdaptParams, nets: Nets, feats: torch.Tensor, low: torch.Tensor, pseudo: torch.Tensor,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Train M and the proxies on this batch's metric pseudo-labels (Eq. 1-3); return the
    reliability map w (Eq. 4), the distance of every pixel to its pseudo-label's proxy (for MOCM),
    and the scalars to log. w and the distances come from M in eval mode (no dropout, running BN
    statistics: DeepLabV3's head has both), read before this step's update."""
    prob = low.softmax(1)
    conf, pred = prob.max(1)
    nets.thresholds.update(ddp.all_gather_cat(conf), ddp.all_gather_cat(pred), cfg.q_m)  # global batch
    sel = select_metric_samples(pred, conf, nets.thresholds.tau, cfg.samples_per_class, gen, cfg.metric_sampling)
    feats = feats.detach()
    noisy = _train_mode_differs(nets.metric)
    if noisy:
        with torch.no_grad():
            nets.metric.eval()
            dist_eval = nets.metric.distances(nets.metric(feats))
    nets.metric.train()
    dist = nets.metric.distances(nets.metric(feats))  # (B, C, h, w)
    loss_m = nca_loss(gather_pixels(dist, sel.indices), sel.labels, cfg.temperature, sel.valid)
    if ddp.world_size() > 1:  # averaged gradients = gradient of the mean over all ranks' samples
        loss_m = loss_m * ddp.global_count_weight(sel.valid.sum())
    nets.opt_metric.zero_grad(set_to_none=True)
    loss_m.backward()
    ddp.average_gradients(nets.metric.parameters())
    nets.opt_metric.step()
    ddp.sync_buffers(nets.metric, average=feats.device.type != "cuda")
    with torch.no_grad():
        d = distance_to_prediction(dist_eval if noisy else dist.detach(), pseudo)
        weight = reliability(d, cfg.alpha, cfg.beta)
    frac = (conf > nets.thresholds.tau[pred]).float().mean()
    n_samples = sel.valid.sum().float()
    return weight, d, {"loss_metric": loss_m.detach(), "metric_fraction": frac, "metric_samples": n_samples}


def _train_mode_differs(module: torch.nn.Module) -> bool:
    """True when ``module`` computes something else in train mode (dropout, batch-statistics BN)."""
    kinds = (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.modules.batchnorm._BatchNorm)
    return any(isinstance(m, kinds) for m in module.modules())


def _all_candidates(images: torch.Tensor, pseudo: torch.Tensor, weight: torch.Tensor, d: torch.Tensor,
                    n_classes: int) -> tuple[torch.Tensor, ...]:
    """MOCM candidates of every rank in rank order (the inputs themselves in one process), gathered in
    the dtypes the buffers store (uint8 image, small-int labels, float16 reliability), so pushing them
    stores exactly what pushing the float originals would."""
    if ddp.world_size() == 1:
        return images, pseudo, weight, d
    labels = pseudo.to(torch.uint8 if n_classes <= 256 else torch.int32)
    return (ddp.all_gather_cat(to_uint8(images)), ddp.all_gather_cat(labels),
            ddp.all_gather_cat(weight.to(torch.float16)), ddp.all_gather_cat(d))


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
    info = init_distributed(dev)
    seed_everything(seed)
    data = CropDataset(target_images, None, cfg.crop, hflip=True, lut=None)
    ckpt_path = out / "ckpt" / "last.pt"
    if info.is_main:
        prepare_out_dir(out)  # fails early on an unusable --out; removes a dead run's temporaries
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
        PlotWriter(out / "plots" / "adapt.csv", PLOT_COLUMNS).finish()
        wall = time.perf_counter() - t_build
        return _finish(cfg, variant, v, nets, meta, out, seed, wall, str(dev), iterations=0)
    sampler = IterationBatches(len(data), cfg.batch_size, seed, start, cfg.iterations, info.rank, info.world_size)
    plots = PlotWriter(out / "plots" / "adapt.csv", PLOT_COLUMNS, start) if info.is_main else None
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
        if done % cfg.ckpt_every == 0 or done == stop_after:
            guard.first_bad = ddp.first_bad_over_ranks(guard.first_bad)
            guard.raise_if_bad(f"adapt {variant}")  # never checkpoint a diverged run
            _checkpoint(ckpt_path, nets, done, wall_before + time.perf_counter() - t0, run_id, info.is_main)
        if stop_after is not None and done >= stop_after:
            progress.close()
            return {"stopped_at": done}
    progress.close()
    wall = wall_before + time.perf_counter() - t0
    _checkpoint(ckpt_path, nets, cfg.iterations, wall, run_id, info.is_main)
    if not info.is_main:
        return {}
    return _finish(cfg, variant, v, nets, meta, out, seed, wall, str(dev), world=info.world_size)


def _ready_nets(cfg: AdaptParams, v: Variant, source_model: Path, dev: torch.device, seed: int, ckpt_path: Path,
               run_id: str, target_images: Path | None = None) -> tuple[Nets, dict, int, float]:
    """Nets built alike on every rank, resumed from this run's checkpoint, wrapped for DDP under
    torchrun; returns ``(nets, source meta, start iteration, wall seconds so far)``."""
    info = dist_info()
    nets, meta = build_nets(cfg, v, source_model, dev, seed, target_images)
    if info.world_size > 1:  # from here each rank has its own global RNG stream (e.g. dropout)
        seed_everything(ddp.rank_seed(seed, info.rank))
    start, wall = _resume(nets, ckpt_path, run_id, cfg.iterations, dev, info.rank)
    _distribute(nets, dev)
    return nets, meta, start, wall


def _resume(nets: Nets, path: Path, run_id: str, total: int, dev: torch.device, rank: int) -> tuple[int, float]:
    """Load this run's unfinished checkpoint, if any, on every rank (rank r restores its own RNG);
    returns ``(start iteration, wall seconds so far)``. Ranks must agree (shared file system)."""
    state = resume_state(path, run_id, total, map_location=str(dev))
    start, wall = 0, 0.0
    if state is not None:
        nets.load(state["nets"])
        set_rng_state(state["rng_ranks"][rank] if "rng_ranks" in state else state["rng"])
        start, wall = int(state["iteration"]), float(state["wall_seconds"])
    ddp.check_same_on_all_ranks(start, "the iteration to resume from")
    return start, wall


def _distribute(nets: Nets, dev: torch.device) -> None:
    """Under torchrun: SyncBN (GPU) and DDP for the student, SyncBN (GPU) and rank 0's weights for M.
    BN buffers are synchronised after each step by ``adapt_step`` / ``metric_step`` instead of
    DDP's per-forward broadcast (see the module docstring). No-op in one process."""
    if ddp.world_size() == 1:
        return
    if dev.type == "cuda":
        was_student = nets.teacher is nets.student
        nets.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets.student)
        nets.teacher = nets.student if was_student else nets.teacher
        if nets.metric is not None:
            nets.metric = torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets.metric)
    # buffers: synced once at construction (rank 0's), then by us after each step, not per forward
    no_fwd_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel).parameters else {"broadcast_buffers": False})
    nets.train_forward = DistributedDataParallel(nets.student, **no_fwd_sync)
    if nets.metric is not None:
        ddp.broadcast_module(nets.metric)


def _log_row(sums: dict[str, torch.Tensor], fill: torch.Tensor, n: int, guard: NonFiniteGuard,
             stage: str) -> dict[str, float]:
    """Means of the logged scalars over the last ``n`` iterations and over ranks (host syncs and
    collectives at log time only); stops every rank together on a non-finite loss."""
    guard.first_bad = ddp.first_bad_over_ranks(guard.first_bad)
    guard.raise_if_bad(stage)
    if ddp.world_size() > 1:
        keys = list(sums)
        means = ddp.all_reduce_mean(torch.stack([sums[k].float() for k in keys]))
        sums = dict(zip(keys, means.unbind(), strict=True))
    row = {k: float(val) / n for k, val in sums.items()}
    row["buffer_fill"] = float(fill)
    return row


def _checkpoint(path: Path, nets: Nets, it: int, wall: float, run_id: str, is_main: bool = True) -> None:
    """Rank 0 saves everything, with every rank's RNG state under DDP; all ranks return once it is
    on disk (collective: every rank calls it)."""
    rngs = ddp.gather_rng_states()
    if is_main:
        save_state(path, nets.student.state_dict(), {"nets": nets.state(), **({"rng_ranks": rngs} if rngs is not None else {})},
                   it, wall, run_id)
    ddp.barrier()


def _finish(cfg, variant, v, nets, meta, out, seed, wall, dev, world: int = 1,
            iterations: int | None = None) -> dict[str, Any]:
    """Write the evaluated network as ``out/model.pt`` (with M, for Table VII) and train metrics."""
    net = nets.student if cfg.evaluated_network == "student" or not v.mean_teacher else nets.teacher
    extra: dict[str, Any] = {"extras": []}
    if nets.metric is not None:
        extra["extras"].append("metric_head")
        extra["metric_head"] = nets.metric.state_dict()
    if v.mean_teacher:  # the report shows the teacher's confidence next to the evaluated network
        extra["extras"].append("teacher")
        extra["teacher"] = nets.teacher.state_dict()
    choices = open_choices(cfg)
    if iterations == 0:
        choices["iterations"] = "0 (AdaBN: BN statistics only, no training step)"
    save_model_checkpoint(
        net, out / "model.pt", protocol=meta.get("protocol", 19), stage="adapt", variant=variant, seed=seed,
        source=meta.get("init", ""), choices=choices, params=section_dict(cfg), input_size=meta.get("input_size"),
        **extra,
    )
    metrics = {"iterations": cfg.iterations if iterations is None else iterations, "wall_seconds": round(wall, 2)}
    run = {"variant": variant, "source_seed": meta.get("seed"), "device": dev, "seed": seed, "world_size": world,
           "threads": current_threads(), "choices": choices}
    write_json(out / "adapt_info.json", run)  # provenance and open choices; the metrics file holds numbers only
    write_json(out / "adapt_metrics.json", metrics)
    return {**metrics, **run}


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

