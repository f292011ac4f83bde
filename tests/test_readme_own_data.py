"""README "Your own data": its commands, read from the README text, run in an empty folder.

The folder has no ``params.yaml``, so every command runs on the built-in defaults (and says so once);
the test adds ``--set`` values for a tiny frame size and schedule, since the defaults are the
paper's (1024x512 frames, 20000 iterations: a GPU's work), and writes the inputs the commands name
(a torchvision deeplabv3_resnet50 file, a folder of JPEG frames) under the names the commands use.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import torch

from stvm.cli import build_parser
from stvm.compat import torchvision
from tests.fixtures.frames import jpeg_frames

ROOT = Path(__file__).resolve().parents[1]
TINY = ["common.device=cpu", "common.threads=1", "prepare.width=64", "prepare.height=32", "prepare.workers=1",
        "adapt.iterations=2", "adapt.crop=32", "adapt.log_every=1", "adapt.ckpt_every=100", "adapt.ema_interval=1",
        "adapt.n_f=16", "adapt.samples_per_class=8", "adapt.buffer_size=3", "adapt.n_mocm=2"]


def readme_commands() -> list[list[str]]:
    """The ``stvm`` lines of the first bash block of README "Your own data", split as a shell would."""
    section = (ROOT / "README.md").read_text().split("\n## Your own data\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if line.startswith("stvm ")]


def write_inputs(cwd: Path, args: list[str]) -> None:
    """What a command reads that no command before it wrote: the foreign model file, the frames."""
    ns = build_parser().parse_args(args)
    if ns.command == "import":
        torch.manual_seed(0)
        net = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                                 num_classes=21, aux_loss=True)
        torch.save(net.state_dict(), cwd / ns.pth)
    if ns.command == "prepare":
        jpeg_frames(cwd / ns.root, 4)


def _accepts_set(args: list[str]) -> bool:
    parser = build_parser()._subparsers._group_actions[0].choices[args[0]]
    return any("--set" in action.option_strings for action in parser._actions)


def test_the_readme_section_has_its_four_commands():
    assert [c[:2] for c in readme_commands()] == [["stvm", n] for n in ("import", "prepare", "adapt", "predict")]


def test_the_readme_own_data_commands_run_in_an_empty_folder(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for command in readme_commands():
        args = command[1:]
        write_inputs(tmp_path, args)
        extra = [x for item in TINY for x in ("--set", item)] if _accepts_set(args) else []
        proc = subprocess.run([sys.executable, "-m", "stvm", *args, *extra], cwd=tmp_path, capture_output=True,
                              text=True, env=env)
        assert proc.returncode == 0, f"{shlex.join(command)}:\n{proc.stderr}"
        assert proc.stderr.count("using the built-in defaults") == 1, proc.stderr
    predict = build_parser().parse_args(readme_commands()[-1][1:])
    record = json.loads((tmp_path / predict.out / "predict.json").read_text())
    assert record["finished"] and record["predicted"] == 4 and record["training_size"] == [64, 32]
    for frame in (tmp_path / predict.images).rglob("*.jpg"):
        stem = "__".join(frame.relative_to(tmp_path / predict.images).with_suffix("").parts)
        pred = cv2.imread(str(tmp_path / predict.out / "pred" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert pred.shape == cv2.imread(str(frame)).shape[:2]  # each frame at its own size
