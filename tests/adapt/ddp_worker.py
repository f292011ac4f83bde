"""Run by ``tests/adapt/test_ddp.py`` under ``torchrun``: the real ``stvm adapt`` CLI, with spies that
dump each rank's full adaptation state at every checkpoint and what each rank was fed.

Usage: ``torchrun --nproc_per_node 2 -m tests.adapt.ddp_worker PARAMS SOURCE_MODEL TARGET_IMAGES ROOT [VARIANT]``.
Runs ``ROOT/full`` uninterrupted, then ``ROOT/res`` stopped after 3 iterations and resumed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def _install_spies(rank: int, fed: dict[str, list[float]]) -> None:
    from stvm.adapt import loop

    checkpoint, step = loop._checkpoint, loop.adapt_step

    def spy_checkpoint(path, nets, it, wall, run_id):
        checkpoint(path, nets, it, wall, run_id)
        torch.save(nets.state(), path.parent / f"rank{rank}_it{it}.pt")

    def spy_step(cfg, v, nets, img_u8, it, seed, rank_arg=0):
        fed.setdefault(str(it), []).append(float(img_u8.float().sum()))
        return step(cfg, v, nets, img_u8, it, seed, rank_arg)

    loop._checkpoint, loop.adapt_step = spy_checkpoint, spy_step


def main(params: str, source: str, target: str, root: str, variant: str = "STvM") -> None:
    from stvm.cli import main as cli

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    fed: dict[str, list[float]] = {}
    _install_spies(rank, fed)
    common = ["adapt", "--quiet", "--params", params, "--variant", variant, "--source-model", source,
              "--target-images", target]
    for out, extra in (("full", []), ("res", ["--stop-after", "3"]), ("res", [])):
        code = cli([*common, "--out", str(Path(root) / out), *extra])
        if code != 0:
            raise SystemExit(code)
    (Path(root) / f"fed_rank{rank}.json").write_text(json.dumps(fed))


if __name__ == "__main__":
    main(*sys.argv[1:6])
