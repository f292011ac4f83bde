"""What tools/gpu_check.py and tools/gpu_parts.py share: the repository root, the numerics criteria,
the plans (GPU check and CPU dry run) and small helpers. Its own module so the two import it and not
each other."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Numerics criteria (CUDA bf16 autocast vs CPU fp32, same weights and input): the largest logit
# difference at most NUMERICS_REL_TOL of the largest |logit|, and the same argmax on at least
# NUMERICS_MIN_AGREE of the pixels. bf16 keeps 8 mantissa bits (relative step 2^-8 = 0.4 %); on the
# CPU its autocast differs from fp32 by 1.1 % of max |logit| (random-init DeepLabV2-R18 at 64 px and
# -R101 at 128 px). The argmax criterion is enforced on the trained model of the chain only: a randomly
# initialised network has near-ties between classes (CPU bf16 agrees on 97.8 % of R101's pixels).
NUMERICS_REL_TOL = 0.05
NUMERICS_MIN_AGREE = 0.99
MST = {"scales": (0.75, 1.0, 1.25), "flip": True}  # configs/paper/*.yaml's MST example


@dataclass(frozen=True)
class Plan:
    """Sizes and time budgets of one mode (the GPU check, or the CPU dry run)."""

    device: str
    train_iters: int  # chain: source iterations (enough for a model with real margins on GPU)
    adapt_iters: int
    numerics: tuple[tuple[str, int], ...]  # random-init (arch, square size) rows
    bench_archs: tuple[str, ...]
    bench_size: tuple[int, int]  # (W, H) of the fake training images; crop = min
    eval_size: tuple[int, int]
    batch: int
    iters: int
    eval_iters: int
    budgets: dict[str, int] = field(default_factory=dict)
    total_s: int = 465


GPU = Plan("cuda", 200, 20, (("deeplabv2_r101", 512),), ("deeplabv2_r101", "deeplabv3_r50"), (1024, 512),
           (2048, 1024), 2, 8, 4,
           {"env": 60, "unit": 90, "chain": 120, "numerics": 60, "bench": 140}, total_s=465)
DRY = Plan("cpu", 4, 4, (("deeplabv2_r18", 64),), ("deeplabv2_r18",), (64, 64), (128, 64), 2, 1, 1,
           {"env": 60, "unit": 90, "chain": 180, "numerics": 60, "bench": 180}, total_s=500)


def parts_of(plan: Plan) -> list[str]:
    return ["env", "unit", "chain", "numerics"] + [f"bench:{a}" for a in plan.bench_archs]


def child_env() -> dict[str, str]:
    """Environment of every child: the repository first on PYTHONPATH (stvm need not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def finite(*values: object) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
