"""``stvm bench --stage threads``: concurrent jobs with and without thread control (a benchmark).

Starts ``jobs`` processes at once, each timing STvM adaptation steps (``adapt_step`` on an
in-memory batch at the demo's sizes), twice: first as torch starts by default (one thread per core
in every process, what the stages did before ``common.threads``), then with each process set to
``threads`` through ``stvm.threads`` (what the stages do now). Prints seconds per step per job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stvm.threads import ENV_VARS


def worker(threads: int | None, iters: int, arch: str, crop: int, batch: int) -> dict[str, float]:
    """Seconds per STvM step in this process (after 2 warm-up steps) and the torch thread count."""
    if threads is not None:
        from stvm.threads import apply_threads

        apply_threads(threads)
    import dataclasses

    import torch

    from stvm.adapt.step import adapt_step, build_nets
    from stvm.config import AdaptParams
    from stvm.models.deeplab import build_model
    from stvm.models.weights import save_model_checkpoint
    from stvm.variants import VARIANTS

    cfg = dataclasses.replace(AdaptParams(), iterations=10**6, crop=crop, batch_size=batch, bn_init="source")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "source.pt"
        save_model_checkpoint(build_model(arch, 19), src, protocol=19, stage="bench")
        nets, _ = build_nets(cfg, VARIANTS["STvM"], src, torch.device("cpu"), 0)
    img = torch.randint(0, 255, (batch, 3, crop, crop), dtype=torch.uint8)
    for it in range(2):
        adapt_step(cfg, VARIANTS["STvM"], nets, img, it, 0)
    t0 = time.perf_counter()
    for it in range(iters):
        adapt_step(cfg, VARIANTS["STvM"], nets, img, it + 2, 0)
    return {"seconds_per_step": (time.perf_counter() - t0) / iters, "threads": torch.get_num_threads()}


def _concurrent(jobs: int, threads: int | None, iters: int, arch: str, crop: int, batch: int) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}  # torch's default: one thread per core
    args = json.dumps([threads, iters, arch, crop, batch])
    code = f"import json; from stvm.speed.threads import worker; print(json.dumps(worker(*json.loads({args!r}))))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(jobs)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def run_threads_bench(jobs: int, threads: int, iters: int, arch: str, crop: int, batch: int) -> None:
    """Print seconds per STvM step of ``jobs`` concurrent processes, without and with thread control."""
    print(f"{jobs} concurrent jobs on {os.cpu_count()} cores | STvM step, {arch}, crop {crop}, batch {batch}, "
          f"{iters} steps each")
    for label, n in (("torch default threads", None), (f"common.threads = {threads}", threads)):
        res = _concurrent(jobs, n, iters, arch, crop, batch)
        per_job = ", ".join(f"{r['seconds_per_step']:.3f}" for r in res)
        mean = sum(r["seconds_per_step"] for r in res) / len(res)
        print(f"{label:24s} ({res[0]['threads']} threads/job): {mean:.3f} s/step mean (jobs: {per_job})")
