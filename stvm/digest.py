"""Content digests of a run's inputs (files and folders), for safe resume.

A checkpoint may only be resumed by a run over the same inputs, so the run fingerprint holds the
sha256 of every input file, not its size (a relabelled PNG keeps its byte count). Hashing a large
dataset on every start would be slow, so digests are cached in a JSON file keyed by path with the
file's (size, mtime_ns, ctime_ns, inode): any write changes ctime, which no tool can set back, and
an entry whose file changed within ``RACY_SECONDS`` of being hashed is not cached at all (a write in
the same timestamp tick could otherwise go unseen, git's "racy clean" rule).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from stvm.errors import StvmError

RACY_SECONDS = 2.0


def require_file(path: Path) -> Path:
    """``path`` itself, when it is a file; a StvmError naming it otherwise (missing, or a folder)."""
    path = Path(path)
    if not path.is_file():
        raise StvmError(path, "is a directory, not a file" if path.is_dir() else "file not found")
    return path


def file_sha256(path: Path) -> str:
    """sha256 of one file, read in 1 MiB blocks; a missing file or a folder is a StvmError."""
    path = require_file(path)
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _load_cache(cache: Path | None) -> dict[str, Any]:
    if cache is None or not cache.is_file():
        return {}
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache only costs a re-hash
    return data if isinstance(data, dict) else {}


def inputs_digest(paths: list[Path], cache: Path | None = None) -> dict[str, str]:
    """``{input: sha256 over (relative name, file sha256) of every file}`` for files and folders.

    Folders are read flat (non-hidden files, sorted), as the prepared layout is. Digests of files
    whose stamp is unchanged come from ``cache``, which is rewritten (atomically) when it changed.
    """
    from stvm.io import write_json

    old, new, now = _load_cache(cache), {}, time.time_ns()
    out: dict[str, str] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise StvmError(root, "input not found")
        files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            key, stamp = str(f.resolve()), _stamp(st)
            entry = old.get(key)
            digest = entry[1] if isinstance(entry, list) and len(entry) == 2 and entry[0] == stamp else file_sha256(f)
            if now - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_SECONDS * 1e9:
                new[key] = [stamp, digest]
            h.update(f"{f.name if f != root else ''}\t{digest}\n".encode())
        out[str(root)] = h.hexdigest()
    if cache is not None and new != old:
        write_json(cache, new)
    return out
