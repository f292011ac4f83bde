"""Code dependencies of each pipeline stage, derived from what its command imports (``stvm deps``).

A stage runs ``python -m stvm <command>``: ``stvm/__main__.py`` -> ``stvm/cli.py`` ``main`` ->
``cmd_<command>``. Its code is every stvm file reachable from there through ``import`` statements,
read statically from the source (function-local imports included, so lazy imports count), plus the
package ``__init__.py`` files on the way and the data files a module ships in the folder of its own
name (``stvm/report/paper.py`` -> ``stvm/report/paper/*.csv``). Over-approximate on purpose: a file
that may run is a dependency.

``stvm deps --write`` rewrites the code entries of ``dvc.yaml`` (``deps:``, the ``stvm/`` lines) and
of ``workflow/rules/*.smk`` (``code=[...]`` inputs) from this; ``stvm deps --check`` (and
``tests/test_deps.py``) fail when either file differs, so the DAG files never drift from the code.
"""

from __future__ import annotations

import ast
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
        tree = ast.parse(path.read_text(), str(path))
        todo |= {p for n in _imports([tree], name, path.name == "__init__.py", root) for p in _with_parents(n)} - seen
    files = {module_file(n, root) for n in seen}
    return files | {d for f in files for d in _data_files(f)}


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


def rewrite_smk(text: str, root: Path = ROOT) -> str:
    """A Snakemake rules file with every rule's ``code=[...]`` input set to its stage code."""
    rules = re.split(r"(?m)^(?=rule \w+:)", text)
    for k, rule in enumerate(rules):
        m = CMD.search(rule)
        if m and "code=[" in rule:
            entries = "".join(f'            "{p}",\n' for p in stage_code(m.group(1), root))
            rules[k] = re.sub(r"code=\[.*?\],\n", lambda _: f"code=[\n{entries}        ],\n", rule, count=1, flags=re.S)
    return "".join(rules)


def dag_files(project: Path) -> list[Path]:
    """The DAG declarations that carry code dependencies: dvc.yaml and the Snakemake rules files."""
    return [project / "dvc.yaml", *sorted((project / "workflow" / "rules").glob("*.smk"))]


def sync(project: Path, write: bool, root: Path = ROOT) -> list[Path]:
    """Files whose code dependencies are out of date (rewritten when ``write``)."""
    stale = []
    for path in dag_files(project):
        text = path.read_text()
        new = rewrite_dvc(text, root) if path.suffix == ".yaml" else rewrite_smk(text, root)
        if new != text:
            stale.append(path)
            if write:
                path.write_text(new)
    return stale
