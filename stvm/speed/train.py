"""``stvm bench``: throughput, peak memory and loop overhead. A benchmark: no test asserts a figure
(tools/gpu_check.py collects them into a JSON; its dry run only checks they are computed).

Loop overhead = (time of one iteration of our real training loop, with data loading from PNG
files, augmentation, logging and checkpoint bookkeeping) / (time of a bare forward + backward +
optimiser step of the same model on an in-memory batch). The loop time is taken as the slope
between two runs of different length, so start-up (model build, first checkpoint read) cancels.
"""

from __future__ import annotations

import dataclasses
import resource
from collections.abc import Callable
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stvm.config import TrainSourceParams
from stvm.models.deeplab import build_model
from stvm.runtime import autocast, resolve_device

# Dense bf16 peak TFLOP/s of common devices, for the utilisation figure (vendor data sheets).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


def fake_prepared(root: Path, n: int, width: int, height: int, classes: int = 19) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    img_dir, lab_dir = root / "images", root / "labels"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(img_dir / f"{i:05d}.png"), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        cv2.imwrite(str(lab_dir / f"{i:05d}.png"), rng.integers(0, classes, (height, width), dtype=np.uint8))
    return img_dir, lab_dir


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bare_step_seconds(arch: str, crop: int, batch: int, iters: int, dev: torch.device) -> tuple[float, float]:
    """Seconds per bare forward+backward+SGD step, and model GFLOPs per step (flop counter)."""
    model = build_model(arch, 19).to(dev).train()
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, crop, crop, device=dev)
    y = torch.randint(0, 19, (batch, crop, crop), device=dev)

    def step() -> None:
        with autocast(dev):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        step()
    for _ in range(max(5, iters // 4)):  # warm-up: allocator and kernel selection settle
        step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(dev)
    return (time.perf_counter() - t0) / iters, fc.get_total_flops() / 1e9


def slope_seconds(run: Callable[[int, Path], None], iters: int) -> float:
    """Seconds per iteration of a real loop: the slope between an ``iters``- and a ``2 * iters``-
    iteration run of ``run(n, out_dir)`` (start-up cancels); a first, untimed 2-iteration run pays the
    one-off warm-up (allocator, kernels)."""
    times = []
    for n in (2, iters, 2 * iters):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run(n, Path(tmp))
            times.append(time.perf_counter() - t0)
    return (times[2] - times[1]) / iters


def _run_train(arch: str, crop: int, batch: int, n: int, dev: torch.device, data, out: Path) -> None:
    from stvm.train import train_source

    cfg = dataclasses.replace(TrainSourceParams(), arch=arch, init="random", iterations=n, batch_size=batch,
                              crop=crop, log_every=max(n // 4, 1), ckpt_every=max(n // 2, 1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_source(cfg, images=data[0], labels=data[1], out=out / "src", protocol=19, seed=0,
                     device=str(dev), show_progress=False)


def reset_peak(dev: torch.device) -> None:
    """Start a new peak-GPU-memory window (no-op on CPU)."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev: torch.device) -> float | None:
    """Peak GPU memory allocated since the last ``reset_peak`` in GiB (None on CPU)."""
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def train_figures(arch: str, width: int, height: int, batch: int, iters: int, dev: torch.device) -> dict:
    """Source-training figures: bare and real-loop seconds per step, GFLOP/step, TFLOP/s, peak memory."""
    crop = min(width, height)
    reset_peak(dev)
    with tempfile.TemporaryDirectory() as tmp:
        data = fake_prepared(Path(tmp), 16, width, height)
        bare, gflops = bare_step_seconds(arch, crop, batch, iters, dev)
        loop = slope_seconds(lambda n, out: _run_train(arch, crop, batch, n, dev, data, out), iters)
    return {"bare_s": bare, "loop_s": loop, "it_per_s": 1.0 / loop, "gflop_per_step": gflops,
            "tflops": gflops / bare / 1e3, "peak_gpu_gib": peak_gib(dev)}


def peak_tflops(name: str) -> float | None:
    """Dense bf16 peak of a known device name (None when unknown)."""
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def bench_device(device: str, arch: str, width: int, height: int, batch: int) -> tuple[torch.device, str]:
    """Resolve the device and print the header line every benchmark starts with; returns (device, name)."""
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name} | torch {torch.__version__} | arch {arch} | image {width}x{height} "
          f"crop {min(width, height)} batch {batch}")
    return dev, name


def run_bench(arch: str, width: int, height: int, batch: int, iters: int, device: str) -> None:
    """Print the source-training and evaluation figures for one model and size."""
    dev, name = bench_device(device, arch, width, height, batch)
    f = train_figures(arch, width, height, batch, iters, dev)
    eval_ips = eval_images_per_second(arch, width, height, iters, dev)
    bare, loop = f["bare_s"], f["loop_s"]
    print(f"train step (bare fwd+bwd+step): {bare * 1e3:.1f} ms  = {batch / bare:.2f} img/s")
    print(f"train step (our loop, all included): {loop * 1e3:.1f} ms = {batch / loop:.2f} img/s")
    print(f"loop overhead: {loop / bare:.3f}x (target <= 1.10)")
    print(f"evaluation (single scale, {width}x{height}): {eval_ips:.2f} img/s")
    print(f"model: {f['gflop_per_step']:.1f} GFLOP per training step")
    if dev.type == "cuda":
        tflops, peak = f["tflops"], peak_tflops(name)
        print(f"achieved: {tflops:.1f} TFLOP/s" + (f" of {peak:.0f} peak bf16 ({100 * tflops / peak:.1f}%)" if peak else ""))
        print(f"peak GPU memory: {f['peak_gpu_gib']:.2f} GiB")
    print(f"peak host memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


@torch.inference_mode()
def eval_images_per_second(arch: str, width: int, height: int, iters: int, dev: torch.device,
                           scales: tuple[float, ...] = (1.0,), flip: bool = False) -> float:
    """Inference throughput at the full test size, as ``evaluate`` computes it (``predict_logits``,
    no autocast; ``scales``/``flip`` > one pass is MST), one image per batch."""
    from stvm.evaluate.inference import predict_logits

    model = build_model(arch, 19).to(dev).eval()
    x = torch.randn(1, 3, height, width, device=dev)
    predict_logits(model, x, (height, width), scales, flip).argmax(1)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        predict_logits(model, x, (height, width), scales, flip).argmax(1)
    _sync(dev)
    return iters / (time.perf_counter() - t0)
