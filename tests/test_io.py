import pickle

import pytest
import torch

from stvm.errors import StvmError
from stvm.io import atomic_dir, atomic_path, read_json, write_json
from stvm.training import load_checkpoint, save_checkpoint


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_and_cleans_up(tmp_path):
    out = tmp_path / "d"
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("x")
    assert (out / "f").read_text() == "x"
    with pytest.raises(StvmError, match="already exists"):
        with atomic_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "e") as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_json_roundtrip_and_errors(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"a": [1, 2], "b": 1}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StvmError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_is_weights_only(tmp_path):
    save_checkpoint({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["w"], torch.ones(2))
    torch.save({"x": Evil()}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(StvmError, match="evil.pt: cannot load as a weights-only checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(StvmError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    import os

    from stvm.io import _HOST, atomic_path, remove_stale_temps

    dead, live = _dead_pid(), os.getpid()
    stale = tmp_path / f".model.pt.{_HOST}-{dead}.k3j.tmp"
    stale_dir = tmp_path / f".prepared.{_HOST}-{dead}.q9.tmp"
    mine = tmp_path / f".model.pt.{_HOST}-{live}.zz.tmp"
    other_host = tmp_path / f".model.pt.elsewhere-{dead}.zz.tmp"
    user_file = tmp_path / ".notes.tmp"
    for p in (stale, mine, other_host, user_file):
        p.write_bytes(b"x")
    (stale_dir / "sub").mkdir(parents=True)
    assert sorted(remove_stale_temps(tmp_path)) == sorted([stale, stale_dir])
    assert mine.exists() and other_host.exists() and user_file.exists()
    stale.write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / f".a.json.{_HOST}-{dead}.k.tmp").write_bytes(b"x")
    with atomic_path(sub / "a.json") as tmp:  # the first write into a folder cleans it
        assert f"{_HOST}-{live}" in tmp.name
        tmp.write_text("{}")
    assert [p.name for p in sub.iterdir()] == ["a.json"]


def test_atomic_path_names_the_output_when_the_disk_is_full(tmp_path, monkeypatch):
    from pathlib import Path

    from stvm.io import write_json

    def full(self, data, *a, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as exc:
        write_json(tmp_path / "m.json", {"a": 1})
    assert exc.value.errno == 28 and exc.value.filename == str(tmp_path / "m.json")
    assert not list(tmp_path.iterdir())


def test_atomic_dir_swaps_an_old_folder_whole(tmp_path):
    from stvm.io import atomic_dir

    out = tmp_path / "eval"
    out.mkdir()
    (out / "old.json").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.json").write_text("new")
        raise KeyboardInterrupt  # killed mid-way: the old folder stays as it was
    assert [p.name for p in tmp_path.iterdir()] == ["eval"] and [p.name for p in out.iterdir()] == ["old.json"]
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.json").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["eval"] and [p.name for p in out.iterdir()] == ["new.json"]
