"""The one exception type the CLI turns into a one-line user message (no traceback)."""

from __future__ import annotations

from pathlib import Path


class StvmError(Exception):
    """A user-facing error: bad input, missing file, bad parameter.

    ``str(err)`` is the whole message the user sees, e.g.
    ``data/raw/gta5/labels/00017.png: label size 1914x1046 differs from image size 1914x1052``.
    """

    def __init__(self, where: str | Path | None, problem: str) -> None:
        self.where = str(where) if where is not None else None
        self.problem = problem
        super().__init__(f"{self.where}: {problem}" if self.where else problem)


class ParamError(StvmError):
    """A params value that does not fit the data (``train_source.crop`` over the frame size): the CLI
    names the params file in front of it."""
