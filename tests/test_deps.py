"""Code dependencies: dvc.yaml lists, and every Snakemake rule computes, exactly the stvm files its command imports."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from stvm.cli import main
from stvm.deps import ROOT, closure, command_modules, rule_commands, stage_code, sync

CMD = re.compile(r"python -m stvm (\w+)")


def dvc_code_deps(project: Path) -> dict[str, tuple[str, set[str]]]:
    """Stage name -> (command, declared stvm/ deps) from dvc.yaml."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, st in stages.items():
        body = st.get("do", st)
        out[name] = (CMD.search(body["cmd"]).group(1), {d for d in body.get("deps", []) if d.startswith("stvm/")})
    return out


def smk_code_deps(project: Path) -> dict[str, tuple[str, set[str]]]:
    """Rule name -> (command its shell runs, the stvm/ files its ``code=stage_code(...)`` input resolves to)."""
    return {rule: (run, set(stage_code(code, project)) if code else set())
            for rule, (run, code) in rule_commands(project).items()}


@pytest.mark.parametrize("reader", [dvc_code_deps, smk_code_deps], ids=["dvc", "snakemake"])
def test_every_stage_declares_exactly_the_code_its_command_imports(reader):
    declared = reader(ROOT)
    assert {"synth", "prepare", "train_source", "adapt", "adabn", "evaluate", "evaluate_reference", "report"} <= set(declared)
    for stage, (command, deps) in declared.items():
        needed = set(stage_code(command))
        assert not needed - deps, f"{stage}: imported but not declared: {sorted(needed - deps)}"
        assert not deps - needed, f"{stage}: declared but not imported: {sorted(deps - needed)}"


def test_stage_code_holds_every_module_the_entry_imports_transitively():
    # the adapt command reaches stvm.training (make_loader, set_poly_lr, ...) through stvm.adapt.loop
    code = set(stage_code("adapt"))
    loop_imports = set(re.findall(r"^from (stvm[\w.]*) import", (ROOT / "stvm/adapt/loop.py").read_text(), re.M))
    for mod in loop_imports:
        rel = mod.replace(".", "/")
        assert f"{rel}.py" in code or f"{rel}/__init__.py" in code, mod
    assert "stvm/report/tables.py" not in code  # not imported by adapt: no false dependency


def _write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def test_closure_follows_lazy_relative_and_package_imports_and_data_folders(tmp_path):
    _write(tmp_path, "stvm/__init__.py", "")
    _write(tmp_path, "stvm/__main__.py", "from stvm.cli import main\n")
    _write(tmp_path, "stvm/cli.py", "from stvm import errors\n\ndef helper():\n    import stvm.conf\n\n"
           "def cmd_run(a):\n    helper()\n    from stvm.pkg.a import f\n\ndef cmd_other(a):\n    import stvm.unused\n\n"
           "def main():\n    pass\n")
    for rel in ("stvm/errors.py", "stvm/conf.py", "stvm/unused.py", "stvm/pkg/b.py", "stvm/pkg/tab/x.csv"):
        _write(tmp_path, rel, "")
    _write(tmp_path, "stvm/pkg/__init__.py", "")
    _write(tmp_path, "stvm/pkg/a.py", "def f():\n    from . import b, tab\n")
    _write(tmp_path, "stvm/pkg/tab.py", "")
    files = {str(p.relative_to(tmp_path)) for p in closure(command_modules("run", tmp_path), tmp_path)}
    assert files == {"stvm/__init__.py", "stvm/__main__.py", "stvm/cli.py", "stvm/errors.py", "stvm/conf.py",
                     "stvm/pkg/__init__.py", "stvm/pkg/a.py", "stvm/pkg/b.py", "stvm/pkg/tab.py", "stvm/pkg/tab/x.csv"}


def _project_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copytree(ROOT / "workflow/rules", tmp_path / "workflow/rules")
    return tmp_path


def test_the_rules_hold_no_generated_list_and_each_computes_its_own_commands_code():
    rules = rule_commands(ROOT)
    assert {r: run for r, (run, _) in rules.items()} == {
        "synth": "synth", "prepare": "prepare", "train_source": "train_source", "adabn": "adapt", "adapt": "adapt",
        "evaluate_reference": "evaluate", "evaluate": "evaluate", "summary": "summary", "report": "report"}
    assert all(code == run for run, code in rules.values())
    for path in (ROOT / "workflow/rules").glob("*.smk"):
        assert '"stvm/' not in path.read_text(), f"{path.name}: a literal code list"


def test_check_catches_a_stale_dvc_yaml_and_a_rule_computing_another_commands_code(tmp_path, monkeypatch, capsys):
    project = _project_copy(tmp_path)
    assert sync(project, write=False) == []
    dvc = project / "dvc.yaml"
    text = dvc.read_text()
    at = text.index("\n  adapt:")  # drop the adapt stage's entry only
    dvc.write_text(text[:at] + text[at:].replace("      - stvm/training.py\n", "", 1))
    smk = project / "workflow/rules/adapt.smk"
    rules = smk.read_text()
    at = rules.index("rule adabn:")  # adabn runs `stvm adapt`: its code is adapt's, not evaluate's
    smk.write_text(rules[:at] + rules[at:].replace('stage_code("adapt")', 'stage_code("evaluate")', 1))
    assert "stvm/training.py" not in dvc_code_deps(project)["adapt"][1]
    assert sync(project, write=False) == [dvc]
    monkeypatch.chdir(project)
    assert main(["deps", "--check"]) == 1
    err = capsys.readouterr().err
    assert "dvc.yaml: code dependencies out of date" in err
    assert 'rule adabn: runs stvm adapt but its code input is stage_code("evaluate")' in err
    assert main(["deps", "--write"]) == 1  # dvc.yaml rewritten; the rule is named, not rewritten
    assert "stvm/training.py" in dvc_code_deps(project)["adapt"][1]
    smk.write_text(rules)
    assert main(["deps", "--check"]) == 0


def test_the_docs_address_stages_as_dvc_does():
    """`name@item` only for matrix/foreach stages (the README once documented `dvc commit train_source@0`)."""
    import re

    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    looped = {name for name, st in stages.items() if "matrix" in st or "foreach" in st}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in re.findall(r"\b([a-z_]+)@[<\w$]", path.read_text()):
            if name in stages:
                assert name in looped, f"{path.name}: {name}@... but {name} is a single stage"
