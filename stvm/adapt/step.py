"""One STvM iteration, read top to bottom: teacher, metric network M, MOCM, student, EMA.

Per iteration (paper Section III): the teacher sees the clean target crop and gives pseudo-labels
for all pixels; with metric learning (MGS), the metric network M embeds the teacher's F features,
is trained with NCA on class-balanced confident pixels (Eq. 1-3), and gives the reliability w of
every pseudo-label (Eq. 4); the student sees the photometrically augmented crop, then MOCM pastes
stored reliable patches (III-D), and is trained with the reliability-weighted CE (Eq. 5). Every
``ema_interval`` iterations the teacher takes an EMA step towards the student (III-B).

Variants (paper Table IV, ``stvm.variants``) switch pieces off; they are booleans of this one
trainer. Without the mean teacher the pseudo-labels come from the student itself (in eval mode) on
the clean image: plain self-training.

Everything a multi-process run must keep equal on every rank goes through ``stvm.adapt.dist`` and
``stvm.distributed`` (no-ops in one process): each phase's optimiser step is one
``distributed.optimizer_step``. The loop around this step (resume, logging, checkpoints) is
``stvm.adapt.loop``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from stvm import distributed
from stvm.adapt import dist as ddp
from stvm.adapt.augment import photometric
from stvm.adapt.batchnorm import freeze_bn, reestimate_bn
from stvm.adapt.classmix import PatchBuffers
from stvm.adapt.losses import nca_loss, reliability, weighted_ce
from stvm.adapt.metric import (
    ClassThresholds,
    MetricHead,
    distance_to_prediction,
    gather_pixels,
    select_metric_samples,
)
from stvm.adapt.teacher import ema_update, should_update, student_weight
from stvm.config import AdaptParams
from stvm.data.datasets import list_stems
from stvm.data.images import normalize, read_rgb, standardize
from stvm.models.deeplab import build_head
from stvm.models.weights import load_model_checkpoint
from stvm.runtime import autocast
from stvm.training import sgd_for
from stvm.variants import Variant


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
        head = build_head(meta["arch"], student.feature_channels, cfg.n_f, student.dilations)
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
    feats, low, pseudo = teacher_predict(nets, x01)
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
            candidates = ddp.gather_candidates(x01, pseudo, weight, d, nets.student.num_classes)
    xs, pseudo_s, weight_s, coverage = student_input(cfg, v, nets, x01, pseudo, weight, candidates, gen)
    loss = student_step(cfg, nets, xs, pseudo_s, weight_s)
    if nets.buffers is not None and cfg.mocm_push == "after_paste":
        nets.buffers.push(*candidates, cfg.tau_mocm)
    if v.mean_teacher and should_update(it + 1, cfg.ema_interval):  # III-B: the teacher's EMA step
        ema_update(nets.teacher, nets.student, student_weight(cfg.ema_lambda, cfg.ema_reading))
    fill = nets.buffers.fill_fraction() if nets.buffers is not None else zero
    return {"loss": loss, **log, "reliability": weight.mean(), "buffer_fill": fill, "mocm_coverage": coverage}


def teacher_predict(nets: Nets, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher path (III-B), no gradient: F features, stride-8 logits and the full-resolution
    pseudo-label of every pixel of the clean crop (``x01``: RGB in [0, 1])."""
    nets.teacher.eval()
    with torch.no_grad(), autocast(x01.device):
        feats = nets.teacher.features(standardize(x01))
        low = nets.teacher.classify(feats).float()
    logits = F.interpolate(low, size=x01.shape[-2:], mode="bilinear", align_corners=False)
    return feats, low, logits.argmax(1)


def metric_step(cfg: AdaptParams, nets: Nets, feats: torch.Tensor, low: torch.Tensor, pseudo: torch.Tensor,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Train M and the proxies on this batch's metric pseudo-labels (Eq. 1-3); return the
    reliability map w (Eq. 4), the distance of every pixel to its pseudo-label's proxy (for MOCM),
    and the scalars to log. w and the distances come from M in eval mode (no dropout, running BN
    statistics: DeepLabV3's head has both), read before this step's update."""
    prob = low.softmax(1)
    conf, pred = prob.max(1)
    gathered = distributed.all_gather_cat(conf), distributed.all_gather_cat(pred)
    nets.thresholds.update(*gathered, cfg.q_m)  # the global batch's percentiles
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
    if distributed.world_size() > 1:  # averaged gradients = gradient of the mean over all ranks' samples
        loss_m = loss_m * distributed.global_count_weight(sel.valid.sum())
    distributed.optimizer_step(nets.opt_metric, loss_m, average=nets.metric.parameters(), buffers=nets.metric)
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


def student_input(cfg: AdaptParams, v: Variant, nets: Nets, x01: torch.Tensor, pseudo: torch.Tensor,
                  weight: torch.Tensor, candidates: tuple[torch.Tensor, ...] | None,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The student's input (III-D): photometric noise, then MOCM pastes from the buffers as they were
    before this batch (``mocm_noise``/``mocm_push`` choose the other orders); returns the input, its
    pseudo-labels and weights after pasting, and the pasted fraction."""
    noise_first = v.augment and (nets.buffers is None or cfg.mocm_noise == "before_paste")
    xs = photometric(x01, gen) if noise_first else x01
    pseudo_s, weight_s, coverage = pseudo, weight, torch.zeros((), device=x01.device)
    if nets.buffers is not None:
        if cfg.mocm_push == "before_paste":
            nets.buffers.push(*candidates, cfg.tau_mocm)
        xs, pseudo_s, weight_s, pasted = nets.buffers.paste(xs, pseudo, weight, cfg.n_mocm, gen)
        coverage = pasted.float().mean()
        if v.augment and not noise_first:
            xs = photometric(xs, gen)
    return xs, pseudo_s, weight_s, coverage


def student_step(cfg: AdaptParams, nets: Nets, xs: torch.Tensor, pseudo: torch.Tensor,
                 weight: torch.Tensor) -> torch.Tensor:
    """One SGD step of the student on the reliability-weighted CE (Eq. 5); returns the loss."""
    dev = xs.device
    nets.student.train()
    if cfg.bn_mode == "frozen":
        freeze_bn(nets.student)
    with autocast(dev):
        out = (nets.train_forward or nets.student)(standardize(xs))
    loss = weighted_ce(out.float(), pseudo, weight)
    distributed.optimizer_step(nets.opt, loss, buffers=nets.student)  # DDP averaged the gradients
    return loss.detach()
