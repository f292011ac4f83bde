"""Running the synthetic benchmark's steps: resumable (a step whose output exists is skipped), at most
``jobs`` at a time once the steps they read are done, and the records a run must keep (the params
it was made with; a shift or budget fixed once).

Why apart from ``steps``: that module only says which stage calls exist and where they write."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from stvm.errors import StvmError
from stvm.io import atomic_path, read_json, write_json
from stvm.synth_benchmark.steps import Step


def check_params(params: Path, out: Path) -> None:
    """Refuse to resume ``out`` with other params than it was made with (skipped steps would be stale),
    and a non-empty ``out`` that no run made (its files would pass for finished steps, or be replaced)."""
    text = params.read_text()
    stamp = out / "params.yaml"
    if not stamp.is_file() and out.is_dir() and any(out.iterdir()):
        raise StvmError(out, "not empty and not a synth_benchmark run (no params.yaml): choose a new or empty --out")
    if stamp.is_file():
        if yaml.safe_load(stamp.read_text()) != yaml.safe_load(text):  # the values; comments may change
            raise StvmError(stamp, f"{out} was made with other params than {params}; "
                                   "delete it or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(stamp) as tmp:
        tmp.write_text(text)


def needs(steps: list[Step]) -> list[set[int]]:
    """Per step, the earlier steps it reads: those whose output folder holds one of its input paths
    (its ``--out`` excluded). A spurious edge only serialises; a missing one cannot occur, because
    every input of a step is a file an earlier step wrote under its own folder, or prepared data."""
    outs = [st.done.parent for st in steps]
    deps: list[set[int]] = []
    for i, st in enumerate(steps):
        args = [a for k, a in enumerate(st.argv) if k == 0 or st.argv[k - 1] != "--out"]
        deps.append({j for j in range(i) if any(a == str(outs[j]) or a.startswith(f"{outs[j]}/") for a in args)})
    return deps


def _start(st: Step, params: Path, quiet: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "stvm", *st.argv, "--params", str(params)] + (["--quiet"] if quiet else [])
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)


def run(steps: list[Step], params: Path, quiet: bool = False, jobs: int = 1) -> dict[str, float]:
    """Run the steps not yet done, at most ``jobs`` at a time in list order once their inputs exist;
    return seconds spent per group (skipped steps: 0; parallel steps each count their own wall time).
    A failed step stops the others (each resumes from its checkpoint on the next run)."""
    spent: dict[str, float] = {}
    todo = [st for st in steps if not st.done.exists()]
    print(f"benchmark: {len(steps) - len(todo)} of {len(steps)} steps already done"
          + (f", {jobs} at a time" if jobs > 1 else ""), file=sys.stderr)
    deps, finished = needs(todo), set()
    live: dict[int, tuple[subprocess.Popen, float]] = {}
    while len(finished) < len(todo):
        for i in [i for i in range(len(todo)) if i not in finished and i not in live and deps[i] <= finished]:
            if len(live) < jobs:
                print(f"[{i + 1}/{len(todo)}] {todo[i].name}", file=sys.stderr, flush=True)
                live[i] = (_start(todo[i], params, quiet), time.perf_counter())
        i, rc = _wait_any(live)
        st, (_, t0) = todo[i], live.pop(i)
        if rc != 0:
            _stop(live)
            raise StvmError(st.done.parent, f"benchmark step '{st.name}' failed (exit {rc}); rerun to resume")
        finished.add(i)
        spent[st.group] = spent.get(st.group, 0.0) + time.perf_counter() - t0
        print(f"[{i + 1}/{len(todo)}] {st.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return spent


def _wait_any(live: dict[int, tuple[subprocess.Popen, float]]) -> tuple[int, int]:
    """The first running step to end, and its exit status."""
    while True:
        for i, (proc, _) in live.items():
            if proc.poll() is not None:
                return i, proc.returncode
        time.sleep(0.2)


def _stop(live: dict[int, tuple[subprocess.Popen, float]]) -> None:
    """Terminate the steps still running (SIGTERM: a stage leaves its last checkpoint) and reap them."""
    for proc, _ in live.values():
        proc.terminate()
    for proc, _ in live.values():
        proc.wait()


def recorded(path: Path, value: dict, what: str) -> dict:
    """Write ``value`` to ``path`` once; later runs must pass the same (a budget or shift is fixed once)."""
    if path.is_file():
        old = read_json(path)
        if {k: old.get(k) for k in value} != value:
            raise StvmError(path, f"{what} was fixed as {old}; this run asks for {value} (delete the file to change it)")
        return old
    write_json(path, value)
    return value
