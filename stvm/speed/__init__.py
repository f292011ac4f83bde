"""``stvm bench``: the speed benchmarks (throughput, peak memory, loop overhead, thread control).

Why a package of their own: they time the stages and print figures, nothing in the pipeline reads
them, and their name kept them confusable with ``stvm.synth_benchmark.steps`` (the synthetic accuracy
benchmark). ``train`` times source training and evaluation, ``adapt`` the adaptation loop,
``threads`` concurrent jobs with and without ``common.threads``.
"""

from __future__ import annotations


def run_speed(stage: str, *, arch: str, width: int, height: int, batch: int, iters: int, device: str,
              jobs: int, threads: int, crop: int) -> None:
    """Run the ``--stage`` benchmark (``train``, ``adapt`` or ``threads``) and print its figures."""
    if stage == "threads":
        from stvm.speed.threads import run_threads_bench

        run_threads_bench(jobs, threads, iters, arch, crop, batch)
        return
    if stage == "adapt":
        from stvm.speed.adapt import run_adapt_bench as run
    else:
        from stvm.speed.train import run_bench as run
    run(arch=arch, width=width, height=height, batch=batch, iters=iters, device=device)
