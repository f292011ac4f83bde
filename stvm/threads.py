"""How many CPU threads a stage process uses: ``common.threads``, capped by ``OMP_NUM_THREADS``.

Read once per process (``stvm.cli`` applies it right after loading the params). Without it torch
starts one thread per core in every process, so two concurrent jobs (``snakemake --cores N``,
``dvc queue start -j N``) oversubscribe the CPU badly (README "Threads"). Snakemake exports
``OMP_NUM_THREADS`` as each job's ``threads:`` (the rules declare ``common.threads``, scaled down
to ``--cores``); for ``dvc queue`` workers set it yourself, e.g. ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import os
import sys

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_count(configured: int, environ: dict[str, str] | None = None) -> int:
    """``configured``, or ``OMP_NUM_THREADS`` when that is set to a smaller positive integer."""
    env = os.environ if environ is None else environ
    try:
        cap = int(env.get("OMP_NUM_THREADS", ""))
    except ValueError:
        cap = 0
    return min(configured, cap) if cap > 0 else configured


def apply_threads(configured: int) -> int:
    """Set torch's and OpenCV's thread counts (now if imported, else through the environment)."""
    n = thread_count(configured)
    for var in ENV_VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)
    return n


def current_threads() -> int:
    """The thread count torch uses in this process (recorded in every stage's provenance)."""
    import torch

    return torch.get_num_threads()
