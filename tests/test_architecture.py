"""The house rules of ARCHITECTURE.md, checked: imports run one way, no cycle, no file over 400 lines.

Rooms, lowest first (a module may import its own room and the rooms below it):
  0 foundations   errors, limits, compat, io, digest, runtime, training, distributed, threads, progress, curve_log,
                  overrides, yamlsafe, params_file, config, variants
  1 data          stvm.data.*  (readers, prepared datasets, PNG I/O, synthetic generator)
  2 models        stvm.models.*
  3 method        stvm.adapt.{augment,batchnorm,classmix,losses,metric,teacher} (equations, building
                  blocks)
  4 stages        train | adapt.{step,loop,dist} | evaluate.* | export: a stage never imports another
  5 report        stvm.report.*  (reads files the stages wrote)
  6 cli           cli, cli_parser, __main__, deps, speed.*, synth_benchmark.*
                  (tools over it all)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stvm.deps import _module_name, imports_of

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {
    "foundations": (0, ["stvm", "stvm.errors", "stvm.limits", "stvm.compat", "stvm.io", "stvm.digest",
                        "stvm.runtime", "stvm.training", "stvm.distributed", "stvm.threads", "stvm.progress", "stvm.curve_log", "stvm.overrides", "stvm.yamlsafe",
                        "stvm.params_file", "stvm.config", "stvm.variants"]),
    "data": (1, ["stvm.data"]),
    "models": (2, ["stvm.models"]),
    "method": (3, ["stvm.adapt", "stvm.adapt.augment", "stvm.adapt.batchnorm", "stvm.adapt.classmix",
                   "stvm.adapt.losses", "stvm.adapt.metric", "stvm.adapt.teacher"]),
    "stage:train": (4, ["stvm.train"]),
    "stage:adapt": (4, ["stvm.adapt.step", "stvm.adapt.loop", "stvm.adapt.dist"]),
    "stage:evaluate": (4, ["stvm.evaluate"]),
    "stage:export": (4, ["stvm.export"]),
    "report": (5, ["stvm.report"]),
    "cli": (6, ["stvm.cli", "stvm.cli_parser", "stvm.__main__", "stvm.deps", "stvm.speed",
                "stvm.synth_benchmark", "stvm.workflow_params"]),
}
MAX_LINES, EXPLAIN_OVER = 400, 300


def room_of(module: str) -> str:
    """The room of a module: the one whose listed name is its longest prefix (exact for top modules)."""
    best, size = None, -1
    for room, (_, names) in ROOMS.items():
        for name in names:
            hit = module == name or (module.startswith(name + ".") and name != "stvm")
            if hit and len(name) > size:
                best, size = room, len(name)
    if best is None:
        raise KeyError(f"{module}: in no room (add it to ROOMS and ARCHITECTURE.md)")
    return best


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the stvm modules it imports (package parents dropped: importing a.b loads a)."""
    return {_module_name(p, root): imports_of(p, root) for p in sorted((root / "stvm").rglob("*.py"))}


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Upward imports and imports between two stages."""
    bad = []
    for mod, targets in edges.items():
        room = room_of(mod)
        for t in targets:
            other = room_of(t)
            if t == "stvm" or other == room:
                continue
            if ROOMS[other][0] > ROOMS[room][0] or (ROOMS[other][0] == ROOMS[room][0] == 4):
                bad.append(f"{mod} ({room}) imports {t} ({other})")
    return sorted(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_imports_run_downward_only_and_stages_do_not_import_each_other():
    assert violations(graph(ROOT)) == []


def test_no_import_cycle():
    edges = {m: {t for t in ts if t != "stvm"} for m, ts in graph(ROOT).items()}
    assert cycles(edges) == []


def test_every_module_has_a_room():
    for mod in graph(ROOT):
        room_of(mod)  # KeyError names a module added without a place in the plan


def test_no_file_over_400_lines_and_a_reason_at_the_top_of_any_over_300():
    for path in sorted((ROOT / "stvm").rglob("*.py")):
        lines = path.read_text().splitlines()
        assert len(lines) <= MAX_LINES, f"{path.relative_to(ROOT)}: {len(lines)} lines"
        if len(lines) > EXPLAIN_OVER:
            head = "\n".join(lines[:30])
            assert "Why" in head or "why" in head, f"{path.relative_to(ROOT)}: {len(lines)} lines, no reason up top"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"stvm/__init__.py": "", "stvm/data/__init__.py": "", "stvm/report/__init__.py": "",
                      **files}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_checks_catch_an_upward_import_a_stage_pair_and_a_cycle(tmp_path):
    root = _tree(tmp_path, {
        "stvm/errors.py": "",
        "stvm/data/images.py": "def f():\n    from stvm.report import tables\n",  # lazy, still upward
        "stvm/report/tables.py": "from stvm.data import images\n",
        "stvm/train.py": "from stvm.export import x\n",
        "stvm/export.py": "x = 1\n",
        "stvm/cli.py": "import stvm.errors\n",
    })
    edges = graph(root)
    assert violations(edges) == sorted([
        "stvm.data.images (data) imports stvm.report (report)",
        "stvm.data.images (data) imports stvm.report.tables (report)",
        "stvm.train (stage:train) imports stvm.export (stage:export)"])
    assert cycles({m: {t for t in ts if t != "stvm"} for m, ts in edges.items()}) == [
        ["stvm.data.images", "stvm.report.tables"]]
    with pytest.raises(KeyError, match="stvm.newthing: in no room"):
        room_of("stvm.newthing")
