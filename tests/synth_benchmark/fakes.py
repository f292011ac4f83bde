"""Stand-ins for the synthetic benchmark's tests: stage processes that write their outputs at once,
and evaluation folders with chosen scores."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from stvm.synth_benchmark import runner

NAMES = ["road", "sidewalk", "building", "wall", "fence", "pole"]  # trainIds 0-5


class FakeProc:
    """A finished stage process: writes the step's outputs on start, as the real stages do on success."""

    def __init__(self, argv, rc: int) -> None:
        self.argv, self.returncode, self.terminated = argv, rc, False

    def poll(self) -> int:
        return self.returncode

    def wait(self) -> int:
        return self.returncode

    def terminate(self) -> None:
        self.terminated = True


def fake_subprocess(monkeypatch, fail: str | None = None, log: list | None = None,
                    miou: Callable[[Path], float] | None = None) -> list[list[str]]:
    """Replace the runner's stage processes; return the argv of every start. ``fail``: a word whose
    steps exit 3; ``miou``: evaluations write scores (``miou(out)`` for every class present)."""
    calls: list[list[str]] = []

    def fake(argv, **_kw):
        calls.append(argv)
        if log is not None:
            log.append([Path(a) for a in argv if a.startswith("/")])
        if fail is not None and fail in argv:
            return FakeProc(argv, 3)
        out = Path(argv[argv.index("--out") + 1])
        if miou is not None and "evaluate" in argv:
            m = miou(out)
            write_eval(out, m, [m] * len(NAMES), [True] * len(NAMES))
        out.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.json", "model.pt", "synth.json", "manifest.json"):
            (out / name).write_text("{}")
        return FakeProc(argv, 0)

    monkeypatch.setattr(runner.subprocess, "Popen", fake)
    return calls


def write_eval(folder: Path, miou: float, ious: list[float], present: list[bool]) -> None:
    """An evaluation folder as ``stvm evaluate`` writes it, with these scores (classes of ``NAMES``)."""
    folder.mkdir(parents=True)
    scores = {f"iou/{n}": v for n, v in zip(NAMES, ious)} | {"miou": miou}
    (folder / "scores.json").write_text(json.dumps(scores))
    (folder / "metrics.json").write_text(json.dumps({"miou": miou}))
    matrix = [[5 if here else 0] * len(NAMES) for here in present]
    (folder / "confusion.json").write_text(json.dumps({"matrix": matrix, "protocol": 19}))
