"""Regenerate docker/constraints.txt: the pins the container needs beyond requirements.lock.

Resolves requirements.lock against PyPI alone (no local CPU wheel) for the image's platform
(Linux x86_64, the image's Python) with ``pip install --dry-run --report``, and writes every
resolved package the lock does not list, pinned exactly. Fails if the resolution would change a
version the lock pins. Needs network access to PyPI and downloads the wheels' metadata (for some,
the wheels: a few GB the first time). Run by ``make lock-cuda``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER_END = "# Regenerate with `make lock-cuda` after `make lock`.\n"


def norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(lock: Path, python: str) -> dict[str, tuple[str, str]]:
    """{normalised name: (name, version)} that pip would install for ``lock`` from PyPI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # PyPI only: no local find-links holding the CPU torch
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--report", str(report), "-r", str(lock)], check=True, env=env,
        )
        items = json.loads(report.read_text())["install"]
    return {norm(i["metadata"]["name"]): (i["metadata"]["name"], i["metadata"]["version"]) for i in items}


def main() -> int:
    lock_path, out = ROOT / "requirements.lock", ROOT / "docker/constraints.txt"
    python = sys.argv[1] if len(sys.argv) > 1 else sys.executable
    lock = {norm(n): v for n, v in (line.split("==") for line in lock_path.read_text().split() if "==" in line)}
    resolved = resolve(lock_path, python)
    changed = [f"{n} {lock[k]} -> {v}" for k, (n, v) in resolved.items() if k in lock and lock[k] != v]
    if changed:
        print("resolution disagrees with requirements.lock: " + ", ".join(changed), file=sys.stderr)
        return 1
    extra = sorted((f"{n}=={v}" for k, (n, v) in resolved.items() if k not in lock), key=str.lower)
    header = out.read_text().split(HEADER_END)[0] + HEADER_END
    out.write_text(header + "\n".join(extra) + "\n")
    print(f"{out.relative_to(ROOT)}: {len(extra)} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
