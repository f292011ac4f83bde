"""Params files on disk: read (UTF-8, bounded YAML), merged over their ``_base_``, written whole.

Why overlays: the twelve paper settings (``configs/paper/``) share about 95 lines and differ in 1-6,
and a copied value drifts (two of them once had another ``common.threads``). A file may name the
file it extends, ``_base_: base.yaml`` (relative to itself, as DAFormer's configs do); its mappings
are merged key by key over the base's, and any other value (a list, a number) replaces the base's.
DVC and Snakemake read ``params.yaml`` as plain YAML and know no ``_base_``, so ``stvm params
--params OVERLAY --out params.yaml`` writes the merged, validated file they track (``make paper``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from stvm.errors import StvmError
from stvm.io import atomic_path
from stvm.yamlsafe import BoundedLoader

BASE_KEY = "_base_"


def read_params_file(path: str | Path) -> Any:
    """The mapping in ``path`` merged over its ``_base_`` chain (errors name the file at fault)."""
    return _resolve(Path(path), ())


def _resolve(path: Path, chain: tuple[Path, ...]) -> Any:
    if path.resolve() in chain:
        raise StvmError(path, f"{BASE_KEY}: the chain of bases comes back to this file")
    raw = _read_yaml(path)
    if not isinstance(raw, dict) or BASE_KEY not in raw:
        return raw
    base = raw.pop(BASE_KEY)
    if not isinstance(base, str) or not base:
        raise StvmError(path, f"{BASE_KEY}: expected a file name relative to this file, got {type(base).__name__}")
    return merged(_resolve(path.parent / base, (*chain, path.resolve())), raw)


def merged(base: Any, overlay: Any) -> Any:
    """``overlay`` over ``base``: mappings merge key by key (the base's order first), anything else replaces."""
    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return overlay
    return {**base, **{k: merged(base.get(k), v) for k, v in overlay.items()}}


def _read_yaml(path: Path) -> Any:
    """One params file's YAML (``{}`` when empty); a missing, unreadable, non-UTF-8 or invalid file is
    one StvmError naming it."""
    if not path.is_file():
        raise StvmError(path, "params file not found" if not path.is_dir() else "is a directory, not a params file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise StvmError(path, f"cannot read params file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise StvmError(path, f"not UTF-8 text (byte {err.start}: {err.object[err.start:err.start + 1]!r})") from None
    try:
        return yaml.load(text, Loader=BoundedLoader) or {}  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, RecursionError) as err:
        raise StvmError(path, f"not valid YAML ({str(err).splitlines()[0][:200]})") from None


class _Dumper(yaml.SafeDumper):
    """Block mappings, and a list of plain values on one line (``scales: [1.0]``), as the files are written."""


_Dumper.add_representer(list, lambda dumper, value: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", value, flow_style=not any(isinstance(v, (dict, list)) for v in value)))


def write_params_file(raw: dict[str, Any], path: str | Path, header: str) -> None:
    """Write the mapping ``raw`` (already validated) atomically as a plain params file, ``header``
    first as a comment: no ``_base_`` left, so DVC and Snakemake read every value."""
    comment = "".join(f"# {line}\n" for line in textwrap.wrap(header, 98))
    with atomic_path(path) as tmp:
        tmp.write_text(comment + yaml.dump(raw, Dumper=_Dumper, sort_keys=False, default_flow_style=False))
