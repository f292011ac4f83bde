"""How many CPU threads a stage process uses: ``common.threads``, from the params alone.

Read once per process (``stvm.cli`` applies it right after loading the params). One rule for every
engine: ``OMP_NUM_THREADS`` (and MKL's, OpenBLAS's) is overwritten with the param, so ``dvc repro``,
``snakemake`` (which exports its job's ``threads:``) and a shell with or without the variable run
the same thread count and so compute the same numbers (docs/OPERATIONS.md "Threads"). Without a count torch
starts one thread per core in every process, and concurrent jobs oversubscribe the CPU badly; for
fewer threads set the param (``--set common.threads=1``, ``dvc exp run -S common.threads=1``,
``snakemake --config 'common={threads: 1}'``).
"""

from __future__ import annotations

import os
import sys

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_count(configured: int, environ: dict[str, str] | None = None) -> int:
    """The thread count a stage runs with: ``configured``, whatever the environment says."""
    del environ  # deliberately ignored: the params alone decide (module docstring)
    return configured


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
