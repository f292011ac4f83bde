"""Code dependencies of each pipeline stage, derived from what its command imports (``stvm deps``).

A stage runs ``python -m stvm <command>``: ``stvm/__main__.py`` -> ``stvm/cli.py`` ``main`` ->
``cmd_<command>``. Its code is every stvm file reachable from there through ``import`` statements,
read statically from the source (function-local imports included, so lazy imports count), plus the
package ``__init__.py`` files on the way and the data files a module ships in the folder of its own
name (``stvm/report/paper.py`` -> ``stvm/report/paper/*.csv``). Over-approximate on purpose: a file
that may run is a dependency.

``dvc.yaml`` is static YAML, so its code entries (``deps:``, the ``stvm/`` lines) are generated:
``stvm deps --write`` rewrites them, ``stvm deps --check`` (and ``tests/test_deps.py``) fail when they
differ. The Snakemake rules hold no list: each computes ``code=stage_code("<command>")`` at parse time
(``workflow/rules/common.smk``); ``--check`` fails when a rule names another command than it runs.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """``stvm.a.b`` -> ``root/stvm/a/b.py`` or ``root/stvm/a/b/__init__.py`` (None if neither)."""
    base = root.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(nodes: list[ast.AST], current: str, is_pkg: bool, root: Path) -> set[str]:
    """Names of the stvm modules imported anywhere inside ``nodes`` (absolute or relative)."""
    found: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = current.split(".") if is_pkg else current.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}", root)}
    return {n for n in found if n.split(".")[0] == "stvm" and module_file(n, root)}


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """The stvm modules the file ``path`` imports anywhere (lazy, relative and package imports
    included): the edges of the import graph ``tests/test_architecture.py`` checks."""
    tree = ast.parse(path.read_text(), str(path))
    return _imports([tree], _module_name(path, root), path.name == "__init__.py", root)


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


ENTRY = {"stvm.__main__", "stvm.cli"}  # read per command by ``command_modules``, not as a whole


def closure(start: set[str], root: Path = ROOT) -> set[Path]:
    """Files of ``start`` and of every stvm module they import, transitively, with packages' ``__init__``
    (the entry modules are included but not followed: their per-command imports are in ``start``)."""
    todo, seen = {p for n in start for p in _with_parents(n)}, set()
    while todo:
        name = todo.pop()
        seen.add(name)
        path = module_file(name, root)
        if name in ENTRY:
            continue
        todo |= {p for n in _file_imports(path, name, root) for p in _with_parents(n)} - seen
    files = {module_file(n, root) for n in seen}
    return files | {d for f in files for d in _data_files(f)}


def _file_imports(path: Path, name: str, root: Path) -> frozenset[str]:
    """``_imports`` of a whole module file, parsed once per version of the file (the Snakemake rules ask
    for every stage's code at parse time, and the stages share most of their modules)."""
    stat = path.stat()
    return _parsed_imports(path, name, root, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _parsed_imports(path: Path, name: str, root: Path, _mtime_ns: int, _size: int) -> frozenset[str]:
    tree = ast.parse(path.read_text(), str(path))
    return frozenset(_imports([tree], name, path.name == "__init__.py", root))


def _data_files(module: Path) -> set[Path]:
    folder = module.with_suffix("")
    if module.name == "__init__.py" or not folder.is_dir():
        return set()
    return {p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def command_modules(command: str, root: Path = ROOT) -> set[str]:
    """Modules ``python -m stvm <command>`` imports directly: cli's top level, ``main``, ``cmd_<command>``
    and the cli functions they call."""
    cli = root / "stvm" / "cli.py"
    tree = ast.parse(cli.read_text(), str(cli))
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if f"cmd_{command}" not in funcs:
        raise ValueError(f"stvm has no command {command!r}")
    todo, used = ["main", f"cmd_{command}"], set()
    while todo:
        fn = todo.pop()
        used.add(fn)
        calls = {c.func.id for c in ast.walk(funcs[fn]) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
        todo += [c for c in calls if c in funcs and c not in used and not c.startswith("cmd_")]
    top = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
    return ENTRY | _imports(top + [funcs[f] for f in used], "stvm.cli", False, root)


def stage_code(command: str, root: Path = ROOT) -> list[str]:
    """Sorted repository-relative paths of the code ``python -m stvm <command>`` may run."""
    return sorted(str(p.relative_to(root)) for p in closure(command_modules(command, root), root))


CMD = re.compile(r"python -m stvm (\w+)")


def _is_code(entry: str) -> bool:
    return entry.startswith("stvm/")


def rewrite_dvc(text: str, root: Path = ROOT) -> str:
    """``dvc.yaml`` with the ``stvm/`` entries of every stage's ``deps:`` replaced by its stage code."""
    lines, out, i = text.splitlines(), [], 0
    command = None
    while i < len(lines):
        line = lines[i]
        if re.match(r"^  \w[\w-]*:\s*$", line):
            command = None
        if m := CMD.search(line):
            command = m.group(1)
        out.append(line)
        i += 1
        if line.strip() == "deps:" and command:
            indent = len(line) - len(line.lstrip()) + 2
            entries = []
            while i < len(lines) and lines[i].startswith(" " * indent + "- "):
                entries.append(lines[i].strip()[2:])
                i += 1
            keep = [e for e in entries if not _is_code(e)] + stage_code(command, root)
            out += [f"{' ' * indent}- {e}" for e in keep]
    return "\n".join(out) + "\n"


RULE_CODE = re.compile(r'code=stage_code\("(\w+)"\)')


def rule_commands(project: Path) -> dict[str, tuple[str, str | None]]:
    """Rule name -> (the stvm command its shell runs, the command its ``code`` input is computed for, or
    None) for every rule of ``workflow/rules/*.smk`` that runs ``python -m stvm``."""
    out = {}
    blocks = (b for p in sorted((project / "workflow" / "rules").glob("*.smk"))
              for b in re.split(r"(?m)^(?=rule \w+:)", p.read_text()))
    for block in blocks:
        name, run = re.match(r"rule (\w+):", block), CMD.search(block)
        if name and run:
            code = RULE_CODE.search(block)
            out[name.group(1)] = (run.group(1), code.group(1) if code else None)
    return out


def rule_problems(project: Path) -> list[str]:
    """Rules whose ``code`` input is missing or computed for another command than the one they run."""
    return [f"rule {rule}: runs stvm {run} but its code input is "
            + (f'stage_code("{code}")' if code else 'not stage_code("...")')
            for rule, (run, code) in sorted(rule_commands(project).items()) if code != run]


def sync(project: Path, write: bool, root: Path = ROOT) -> list[Path]:
    """``dvc.yaml`` when its code dependencies are out of date (rewritten when ``write``), else []."""
    path = project / "dvc.yaml"
    text = path.read_text()
    new = rewrite_dvc(text, root)
    if new == text:
        return []
    if write:
        path.write_text(new)
    return [path]
