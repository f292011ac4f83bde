"""Atomic file output, safe checkpoint loading and small JSON helpers.

Every artifact stvm writes goes through ``atomic_path``/``atomic_dir`` (write to a temporary name
in the same directory, then ``os.replace``), so an interrupted stage never leaves a half-written
output that DVC or Snakemake could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stvm.errors import StvmError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; rename it onto ``path`` only on success.

    Refuses (StvmError) when ``path`` already exists unless ``overwrite`` is set, so a stage never
    silently mixes new files into an old output.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise StvmError(path, "output already exists (remove it or pass --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as pretty, key-sorted JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, turning a missing or malformed file into a StvmError."""
    path = Path(path)
    if not path.is_file():
        raise StvmError(path, "file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StvmError(path, f"not valid JSON ({err})") from None


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary name, then rename: a kill never leaves a truncated checkpoint."""
    import torch

    # Serialise to memory first: torch.save names the zip's inner folder after the file, and the
    # temporary name is random, so saving straight to it would make identical models differ in bytes.
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (never unpickle user files)."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise StvmError(path, "checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StvmError(path, f"cannot load as a weights-only checkpoint: {first}") from None
    if not isinstance(obj, dict):
        raise StvmError(path, f"expected a dict checkpoint, got {type(obj).__name__}")
    return obj
