"""The report's provenance (``stvm.report.provenance``): git revision and changed inputs."""

import subprocess

from stvm.report.provenance import git_changes, git_revision


def test_git_revision_never_fails(tmp_path, monkeypatch):
    assert git_revision(tmp_path) in ("unknown",) or len(git_revision(tmp_path)) == 40

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert git_revision(tmp_path) == "unknown"


def test_git_changes_names_edited_tracked_files_but_not_dvc_lock(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for name in ("params.yaml", "dvc.lock", "code.py"):
        (tmp_path / name).write_text("a\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_changes(tmp_path) == "none"
    (tmp_path / "dvc.lock").write_text("b\n")  # rewritten by dvc repro itself: not a change of the inputs
    (tmp_path / "untracked.txt").write_text("x\n")
    assert git_changes(tmp_path) == "none"
    (tmp_path / "params.yaml").write_text("b\n")
    (tmp_path / "code.py").write_text("b\n")
    assert git_changes(tmp_path) == "code.py, params.yaml"
    assert git_changes(tmp_path / "missing") == "unknown"
