"""``stvm bench --stage adapt``: STvM vs ST_MT iteration time, side by side, and loop overhead.

Iteration times are slopes between an n- and a 2n-iteration run of the real ``adapt`` loop (data
from PNG files, checkpoints, logging included); the bare figure is ``adapt_step`` alone on an
in-memory batch (the algorithm, without the loop around it).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import torch

from stvm.adapt.loop import adapt
from stvm.adapt.step import adapt_step, build_nets
from stvm.speed.train import bench_device, fake_prepared, peak_gib, reset_peak, slope_seconds
from stvm.config import AdaptParams
from stvm.models.deeplab import build_model
from stvm.models.weights import save_model_checkpoint
from stvm.variants import VARIANTS


def _cfg(crop: int, batch: int, n: int) -> AdaptParams:
    """Paper defaults at this size; ST_MT without the Table VII probe M (plain mean-teacher self-training,
    the baseline STvM's cost is compared with)."""
    return dataclasses.replace(AdaptParams(), iterations=n, crop=crop, batch_size=batch, log_every=max(n // 4, 1),
                               ckpt_every=max(n // 2, 1), metric_probe=False)


def _run_adapt(variant: str, src: Path, images: Path, crop: int, batch: int, n: int, dev: torch.device,
               out: Path) -> None:
    adapt(_cfg(crop, batch, n), variant=variant, source_model=src, target_images=images, out=out, seed=0,
          device=str(dev), show_progress=False)


def _bare_seconds(variant: str, src: Path, images: Path, crop: int, batch: int, iters: int,
                  dev: torch.device) -> tuple[float, float]:
    """Seconds per bare ``adapt_step`` and its GFLOPs (flop counter, first step)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = _cfg(crop, batch, 10**6)
    nets, _ = build_nets(cfg, VARIANTS[variant], src, dev, 0, target_images=images)
    img = torch.randint(0, 255, (batch, 3, crop, crop), dtype=torch.uint8, device=dev)
    with FlopCounterMode(display=False) as fc:
        adapt_step(cfg, VARIANTS[variant], nets, img, 0, 0)
    for it in range(1, 2):
        adapt_step(cfg, VARIANTS[variant], nets, img, it, 0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for it in range(iters):
        adapt_step(cfg, VARIANTS[variant], nets, img, it + 2, 0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters, fc.get_total_flops() / 1e9


def adapt_figures(arch: str, width: int, height: int, batch: int, iters: int, dev: torch.device) -> dict:
    """Per variant (ST_MT, STvM): bare and loop seconds per iteration, GFLOP/step, TFLOP/s, peak memory."""
    crop = min(width, height)
    res = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, _ = fake_prepared(Path(tmp) / "tgt", 16, width, height)
        src = Path(tmp) / "source.pt"
        save_model_checkpoint(build_model(arch, 19), src, protocol=19, stage="bench")
        for v in ("ST_MT", "STvM"):
            reset_peak(dev)
            bare, gflops = _bare_seconds(v, src, images, crop, batch, iters, dev)
            loop = slope_seconds(lambda n, out: _run_adapt(v, src, images, crop, batch, n, dev, out), iters)
            res[v] = {"bare_s": bare, "loop_s": loop, "it_per_s": 1.0 / loop, "gflop_per_step": gflops,
                      "tflops": gflops / bare / 1e3, "peak_gpu_gib": peak_gib(dev)}
    res["STvM_over_ST_MT"] = res["STvM"]["loop_s"] / res["ST_MT"]["loop_s"]
    return res


def run_adapt_bench(arch: str, width: int, height: int, batch: int, iters: int, device: str) -> None:
    """Print STvM and ST_MT iteration times, their ratio, and the loop overhead."""
    dev, _ = bench_device(device, arch, width, height, batch)
    res = adapt_figures(arch, width, height, batch, iters, dev)
    for v in ("ST_MT", "STvM"):
        bare, loop = res[v]["bare_s"], res[v]["loop_s"]
        print(f"{v:6s} iteration: {loop * 1e3:8.1f} ms (loop) {bare * 1e3:8.1f} ms (bare step)  overhead {loop / bare:.3f}x")
    print(f"STvM / ST_MT iteration time: {res['STvM_over_ST_MT']:.3f} (target <= 1.6)")
    if dev.type == "cuda":
        print(f"peak GPU memory: ST_MT {res['ST_MT']['peak_gpu_gib']:.2f} GiB, STvM {res['STvM']['peak_gpu_gib']:.2f} GiB")
