"""Test-wide settings: one intra-op thread (tiny tensors run faster without OpenMP barriers, and
timings stay stable when CI shares its 2 cores), and no accidental GPU use."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402

torch.set_num_threads(1)
