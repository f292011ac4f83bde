"""Content digests of a run's inputs: a changed file is never missed, an unchanged one not re-hashed."""

from __future__ import annotations

import os
import time

import pytest

from stvm import digest
from stvm.errors import StvmError


def _folder(tmp_path):
    d = tmp_path / "labels"
    d.mkdir()
    for i in range(3):
        (d / f"{i}.png").write_bytes(bytes([i]) * 100)
    (d / ".hidden").write_bytes(b"ignored")
    return d


def test_same_size_same_mtime_change_is_seen(tmp_path):
    d = _folder(tmp_path)
    cache = tmp_path / "cache.json"
    before = digest.inputs_digest([d], cache)
    p = d / "1.png"
    st = p.stat()
    p.write_bytes(b"\x09" * 100)  # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back
    assert digest.inputs_digest([d], cache) != before


def test_unchanged_files_are_not_hashed_again(tmp_path, monkeypatch):
    d = _folder(tmp_path)
    time.sleep(0.01)
    monkeypatch.setattr(digest, "RACY_SECONDS", 0.001)  # instead of waiting 2 s for the files to age
    cache = tmp_path / "cache.json"
    first = digest.inputs_digest([d], cache)
    calls = []
    real = digest.file_sha256
    monkeypatch.setattr(digest, "file_sha256", lambda p: calls.append(p) or real(p))
    assert digest.inputs_digest([d], cache) == first and calls == []
    (d / "2.png").write_bytes(b"\x07" * 100)
    assert digest.inputs_digest([d], cache) != first and [p.name for p in calls] == ["2.png"]


def test_recently_written_files_are_not_cached(tmp_path):
    d = _folder(tmp_path)  # just written: within the racy window
    cache = tmp_path / "cache.json"
    digest.inputs_digest([d], cache)
    assert not cache.exists()


def test_renaming_a_file_changes_the_digest_and_a_missing_input_is_an_error(tmp_path):
    d = _folder(tmp_path)
    before = digest.inputs_digest([d])
    (d / "2.png").rename(d / "9.png")
    assert digest.inputs_digest([d]) != before
    with pytest.raises(StvmError, match="input not found"):
        digest.inputs_digest([tmp_path / "nope"])
    with pytest.raises(StvmError, match="is a directory"):
        digest.require_file(d)
