"""Test-wide settings: one intra-op thread (tiny tensors run faster without OpenMP barriers, and
timings stay stable when CI shares its 2 cores), and no accidental GPU use."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``cuda`` when no CUDA device is visible, saying why (CI is CPU-only)."""
    if torch.cuda.is_available():
        return
    import pytest

    reason = ("no CUDA device visible (CPU-only run; `make gpu-check` runs the cuda-marked tests "
              "on a GPU machine with CUDA_VISIBLE_DEVICES set)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
