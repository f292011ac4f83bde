"""Atomic file output and small JSON helpers (checkpoint files: ``stvm.training``).

Every artifact stvm writes goes through ``atomic_path``/``atomic_dir`` (write to a temporary name
in the same directory, then ``os.replace``), so an interrupted stage never leaves a half-written
output that DVC or Snakemake could mistake for a finished one. Temporary names carry the host and
process id (``.<name>.<host>-<pid>.<random>.tmp``): a run killed before it could clean up (SIGKILL,
power loss) leaves its temporary behind, and the next write into that folder on the same host
removes every temporary whose process is gone (``remove_stale_temps``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from stvm.errors import StvmError

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+\.tmp$")
_CLEANED: set[str] = set()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporaries a dead stvm process left in ``folder`` (same host only: a process on
    another host cannot be probed, its temporaries are left alone); return what was removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.match(p.name)
        if not m or m["host"] != _HOST or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _clean_once(folder: Path) -> None:
    key = str(folder.resolve())
    if key not in _CLEANED:
        remove_stale_temps(folder)
        _CLEANED.add(key)


def real_path(path: str | Path) -> Path:
    """``path`` with every symlink resolved; a symlink loop is a StvmError naming it."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as err:  # Python < 3.13 raises RuntimeError for a loop
        loop = isinstance(err, RuntimeError) or getattr(err, "errno", None) == 40
        raise StvmError(path, "is a symlink loop" if loop else f"cannot resolve ({err.strerror or err})") from None


def refuse_overlap(out: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Refuse an output that is, holds or lies inside one of the command's inputs (it would read its
    own output as input, or replace its input), symlinks resolved."""
    o = real_path(out)
    for given in (i for i in inputs if i is not None):
        i = real_path(given)
        if o == i or o.is_relative_to(i) or i.is_relative_to(o):
            how = "is" if o == i else ("lies inside" if o.is_relative_to(i) else "holds")
            raise StvmError(out, f"output {how} the input {given}; choose an output outside the inputs")


def _own(rel: Path, own: Sequence[str]) -> bool:
    """``rel`` matches one of the ``own`` patterns part by part (``*`` stays within a part), or is a
    temporary of an stvm write (this run's or a dead one's)."""
    parts = rel.parts
    return any(_TEMP.match(part) for part in parts) or any(
        len(pat.split("/")) == len(parts) and all(map(fnmatch.fnmatchcase, parts, pat.split("/"))) for pat in own)


def refuse_foreign(folder: Path, own: Sequence[str], why: str, scope: Sequence[str] = ()) -> None:
    """Refuse to replace ``folder`` (or only its sub-folders ``scope``) when it holds a file or link
    outside the output layout ``own`` (patterns relative to ``folder``, ``train/images/*.png``): a
    command never deletes what it did not write."""
    if not folder.is_dir() or folder.is_symlink():
        return
    found = sorted(p for sub in ([folder / s for s in scope] if scope else [folder]) for p in sub.rglob("*"))
    foreign = [p.relative_to(folder).as_posix() for p in found
               if p.is_symlink() or (not p.is_dir() and not _own(p.relative_to(folder), own))]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f", ... (+{len(foreign) - 3} more)" if len(foreign) > 3 else "")
        raise StvmError(folder, f"holds {len(foreign)} file{'s' * (len(foreign) > 1)} it did not write ({shown}); {why}")


def prepare_out_dir(path: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Check up front that the output folder ``path`` can be written (creating nothing) and overlaps
    none of ``inputs``, and remove a dead run's temporaries in it, so an unusable ``--out`` fails
    before any work, in one line."""
    path = Path(path)
    refuse_overlap(path, inputs)
    if path.exists() and not path.is_dir():
        raise StvmError(path, "output exists and is not a directory")
    existing = next(p for p in [path, *path.parents] if p.exists() or p == Path(p.anchor or "."))
    if existing.exists() and not existing.is_dir():
        raise StvmError(path, f"cannot create the output folder: {existing} is a file")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise StvmError(path, f"output folder is not writable ({existing}: permission denied)")
    if path.is_dir():
        for sub in [path, *(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))]:
            _clean_once(sub)
    return path


def _named(err: OSError, path: Path, tmp: Path | None) -> OSError:
    """The same OS error, naming the output ``path`` instead of a temporary name (or of nothing)."""
    if err.filename is None or (tmp is not None and str(err.filename) == str(tmp)):
        return type(err)(err.errno, err.strerror or str(err), str(path))
    return err


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clean_once(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        raise _named(err, path, tmp_path) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; rename it onto ``path`` only on success.

    Refuses (StvmError) when ``path`` already exists unless ``overwrite`` is set, so a stage never
    silently mixes new files into an old output. An old ``path`` is first renamed aside, so a
    reader finds either the old folder or the new one, never a mixture.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise StvmError(path, "output already exists (remove it or pass --overwrite)")
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clean_once(path.parent)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
            os.replace(path, old)  # onto the empty temporary folder: atomic
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as err:
        raise _named(err, path, tmp) from None
    finally:
        if tmp is not None and tmp.exists():
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
    except OSError as err:
        raise StvmError(path, f"cannot read file ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise StvmError(path, f"not valid JSON ({str(err)[:120]})") from None
