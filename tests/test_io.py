import pickle

import pytest
import torch

from stvm.errors import StvmError
from stvm.io import atomic_dir, atomic_path, load_checkpoint, read_json, save_checkpoint, write_json


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
