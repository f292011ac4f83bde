"""The bad-input catalogue (issue 16), walked through the CLI: every case exits 2 with one line on
stderr naming the file and the problem, no traceback, and nothing half-written at the output.

Most cases run ``stvm.cli.main`` in-process (what ``python -m stvm`` runs, without paying a torch
import per case); the signal and file-size cases need a real process and use one.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stvm.cli import main
from stvm.limits import PNG_MAGIC
from tests.fixtures import raw as F
from tests.fixtures.tiny import source_model_and_target, write_prepared

ROOT = Path(__file__).resolve().parents[1]
TINY_PARAMS = """\
common: {device: cpu}
prepare: {width: 48, height: 32, workers: 1}
train_source: {arch: deeplabv2_tiny, init: random, iterations: 4, batch_size: 2, crop: 32, log_every: 2,
               ckpt_every: 2}
adapt: {iterations: 2, crop: 32, log_every: 1, ckpt_every: 2, n_f: 16, samples_per_class: 8, buffer_size: 3}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny source model (trained at 48x32), target images, labelled val data and a params file."""
    root = tmp_path_factory.mktemp("tiny")
    model, target = source_model_and_target(root)
    val_images, val_labels = write_prepared(root / "val", n=2)
    params = root / "params.yaml"
    params.write_text(TINY_PARAMS)
    return {"root": root, "model": model, "target": target, "val_images": val_images, "val_labels": val_labels,
            "params": params, "src_images": root / "src/images", "src_labels": root / "src/labels"}


def fails(capsys, *args, names: object = None, says: str = "") -> str:
    """Run the CLI in-process; assert exit 2 and one error line (naming ``names``, containing ``says``)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"stvm {args[0]}: error: "), err
    assert "Traceback" not in err
    if names is not None:
        assert str(names) in lines[0], err
    assert says in lines[0], err
    return lines[0]


def leftovers(folder: Path) -> list[Path]:
    """Everything under ``folder`` (it should be empty or absent after a failed stage)."""
    return sorted(folder.rglob("*")) if folder.exists() else []


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of width x height, all zeros: tiny on disk, huge when decoded."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = zlib.compress(b"\x00" * ((width + 7) // 8 + 1) * height, 9)
    return (PNG_MAGIC + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def params_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "p.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# --- params -------------------------------------------------------------------------------------


def test_params_not_utf8(tmp_path, capsys):
    p = params_file(tmp_path, b"adapt:\n  lr: \xff\xfe\n")
    fails(capsys, "params", "--params", p, names=p, says="not UTF-8")


def test_params_alias_bomb_is_refused_without_echoing_it(tmp_path, capsys):
    levels = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"&{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    p = params_file(tmp_path, "adapt:\n  lr: [" + ", ".join(levels) + "]\n")  # a wrong type: its value is shown
    assert p.stat().st_size < 600  # 9**9 = 387 million strings once expanded
    line = fails(capsys, "params", "--params", p, names=p, says="expands to more than 100,000 values")
    assert "lol" not in line and len(line) < 300


def test_params_huge_value_is_not_echoed_whole(tmp_path, capsys):
    p = params_file(tmp_path, "adapt:\n  lr: [" + ",".join(["1"] * 10000) + "]\n")
    line = fails(capsys, "params", "--params", p, names=p, says="adapt.lr: expected float")
    assert len(line) < 300


@pytest.mark.parametrize("text, key", [
    ("adapt:\n  ema_lambda: .nan\n", "adapt.ema_lambda: expected a finite number"),
    ("train_source:\n  lr: .inf\n", "train_source.lr: expected a finite number"),
    ("evaluate:\n  scales: [1.0, -.inf]\n", "evaluate.scales[1]: expected a finite number"),
    ("common:\n  seed: -1\n", "common.seed: expected a value in [0, 4294967295]"),
    ("synth:\n  seed: 18446744073709551616\n", "synth.seed: expected a value in [0, 4294967295]"),
    ("seeds: [0, 4294967296]\n", "seeds[1]: expected an integer seed in [0, 4294967295]"),
    ("source_seed: 18446744073709551616\n", "source_seed: expected a value in [0, 4294967295]"),
    ("prepare:\n  width: 1000000000\n", "prepare.width: expected a value in [8, 8192]"),
])
def test_params_out_of_range(tmp_path, capsys, text, key):
    p = params_file(tmp_path, text)
    fails(capsys, "params", "--params", p, names=p, says=key)


def test_seed_override_out_of_range(tiny, tmp_path, capsys):
    fails(capsys, "train_source", "--params", tiny["params"], "--quiet", "--seed", 2**64, "--images",
          tiny["src_images"], "--labels", tiny["src_labels"], "--out", tmp_path / "run", says="--seed")
    assert not (tmp_path / "run").exists()


def test_params_is_a_directory(tmp_path, capsys):
    fails(capsys, "params", "--params", tmp_path, names=tmp_path, says="is a directory")


# --- raw datasets (prepare) ---------------------------------------------------------------------


def test_prepare_refuses_a_jpeg_label_named_png(tmp_path, capsys):
    data = F.make_gta5(tmp_path / "raw", n=3)
    label = tmp_path / "raw/labels/00002.png"
    buf = io.BytesIO()
    Image.fromarray(np.full((F.SIZE[1], F.SIZE[0]), 7, np.uint8), "L").save(buf, "JPEG", quality=95)
    label.write_bytes(buf.getvalue())
    p = params_file(tmp_path, "prepare: {width: 16, height: 8, workers: 1}\n")
    fails(capsys, "prepare", "--params", p, "--quiet", "--dataset", "gta5", "--root", data.root, "--out",
          tmp_path / "out", names=label, says="JPEG")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder either


def test_prepare_refuses_a_decompression_bomb_label(tmp_path, capsys):
    data = F.make_gta5(tmp_path / "raw", n=2)
    label = tmp_path / "raw/labels/00001.png"
    label.write_bytes(png_bomb(13500, 13500))  # 182 Mpx in 22 KB
    p = params_file(tmp_path, "prepare: {width: 16, height: 8, workers: 1}\n")
    fails(capsys, "prepare", "--params", p, "--quiet", "--dataset", "gta5", "--root", data.root, "--out",
          tmp_path / "out", names=label, says="decompression-bomb limit")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_score_refuses_a_decompression_bomb_prediction(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred/a.png").write_bytes(png_bomb(13500, 13500))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "gt/a.png")
    fails(capsys, "score", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", names=tmp_path / "pred/a.png",
          says="decompression-bomb limit")


# --- prepared datasets (train_source) -----------------------------------------------------------


def _train(tiny, out: Path, images: Path, labels: Path, *extra) -> list[object]:
    return ["train_source", "--params", tiny["params"], "--quiet", "--images", images, "--labels", labels,
            "--out", out, *extra]


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_train_refuses_labels_at_another_resolution(tiny, tmp_path, capsys, scale):
    images, labels = write_prepared(tmp_path / "data", n=3)
    bad = labels / "00001.png"
    lab = np.asarray(Image.open(bad))
    Image.fromarray(np.kron(lab, np.ones((2, 2), np.uint8)) if scale == 2 else lab[::2, ::2]).save(bad)
    fails(capsys, *_train(tiny, tmp_path / "run", images, labels), names=bad, says="differs from its image's")
    assert not (tmp_path / "run/model.pt").exists() and not (tmp_path / "run/plots/train.csv").exists()


def test_train_refuses_a_jpeg_prepared_label(tiny, tmp_path, capsys):
    images, labels = write_prepared(tmp_path / "data", n=3)
    bad = labels / "00000.png"
    Image.open(bad).save(bad, "JPEG", quality=90)
    fails(capsys, *_train(tiny, tmp_path / "run", images, labels), names=bad, says="JPEG")
    assert not (tmp_path / "run/model.pt").exists()


# --- adapt inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_adapt_source_model_missing_or_a_directory(tiny, tmp_path, capsys, kind):
    model = tmp_path / "model.pt"
    if kind == "directory":
        model.mkdir()
    fails(capsys, "adapt", "--params", tiny["params"], "--quiet", "--variant", "ST", "--source-model", model,
          "--target-images", tiny["target"], "--out", tmp_path / "run", names=model,
          says="not found" if kind == "missing" else "is a directory")
    assert not (tmp_path / "run").exists()


# --- outputs ------------------------------------------------------------------------------------


def _evaluate(tiny, out: Path, model: Path | None = None, *extra) -> list[object]:
    return ["evaluate", "--params", tiny["params"], "--quiet", "--model", model or tiny["model"], "--images",
            tiny["val_images"], "--labels", tiny["val_labels"], "--out", out, *extra]


@pytest.mark.parametrize("stage", ["train_source", "adapt", "evaluate"])
def test_out_is_an_existing_file_or_under_one(tiny, tmp_path, capsys, stage):
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    for out in (afile, afile / "sub"):
        args = {"train_source": _train(tiny, out, tiny["src_images"], tiny["src_labels"]),
                "evaluate": _evaluate(tiny, out),
                "adapt": ["adapt", "--params", tiny["params"], "--quiet", "--variant", "ST", "--source-model",
                          tiny["model"], "--target-images", tiny["target"], "--out", out]}[stage]
        fails(capsys, *args, names=afile)
    assert afile.read_text() == "keep me\n" and sorted(tmp_path.iterdir()) == [afile]


def test_out_in_a_read_only_folder(tiny, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root ignores the mode bits: make the kernel's answer what it would be
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    fails(capsys, *_evaluate(tiny, ro / "eval"), names=ro / "eval", says="not writable")
    assert not list(ro.iterdir())


def test_unreadable_model(tiny, tmp_path, capsys, monkeypatch):
    model = tmp_path / "model.pt"
    model.write_bytes(tiny["model"].read_bytes())
    model.chmod(0)
    if os.geteuid() == 0:  # root reads anything: fail the open as the kernel would for a user
        real = torch.load

        def load(f, *a, **kw):
            if Path(f) == model:
                raise PermissionError(13, "Permission denied", str(model))
            return real(f, *a, **kw)
        monkeypatch.setattr(torch, "load", load)
    fails(capsys, *_evaluate(tiny, tmp_path / "eval", model), names=model, says="Permission denied")
    assert not (tmp_path / "eval").exists()


def test_disk_full_during_a_checkpoint(tiny, tmp_path, capsys, monkeypatch):
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name.startswith(".last.pt."):
            real(self, data[: len(data) // 2])  # half of it reaches the disk, then the device is full
            raise OSError(28, "No space left on device")
        return real(self, data)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    out = tmp_path / "run"
    fails(capsys, *_train(tiny, out, tiny["src_images"], tiny["src_labels"]), names=out / "ckpt/last.pt",
          says="No space left on device")
    assert not (out / "model.pt").exists() and not (out / "ckpt/last.pt").exists()
    assert not [p for p in leftovers(out) if p.name.endswith(".tmp")]


def test_file_size_limit_in_a_real_process(tiny, tmp_path):
    """A write failing in the kernel (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC), end to end."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    out = tmp_path / "run"
    args = _train(tiny, out, tiny["src_images"], tiny["src_labels"])
    proc = subprocess.run([sys.executable, "-W", "ignore", "-m", "stvm", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, preexec_fn=limit,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(out / "ckpt/last.pt") in lines[0] and "File too large" in lines[0]
    assert not [p for p in leftovers(out) if p.name.endswith(".tmp") or p.name in ("last.pt", "model.pt")]


# --- checkpoints and metrics files --------------------------------------------------------------


@pytest.mark.parametrize("field, value, says", [
    ("protocol", 17, "protocol 17"),
    ("num_classes", 10**9, "num_classes 1000000000"),
])
def test_hand_edited_checkpoint_metadata(tiny, tmp_path, capsys, field, value, says):
    obj = torch.load(tiny["model"], weights_only=True)
    obj[field] = value
    torch.save(obj, tmp_path / "m.pt")
    fails(capsys, *_evaluate(tiny, tmp_path / "eval", tmp_path / "m.pt"), names=tmp_path / "m.pt", says=says)
    assert not (tmp_path / "eval").exists()


def test_import_with_integer_keys(tmp_path, capsys):
    torch.save({0: torch.zeros(2), 1: torch.zeros(3)}, tmp_path / "ext.pth")
    fails(capsys, "import", "--pth", tmp_path / "ext.pth", "--out", tmp_path / "m.pt", names=tmp_path / "ext.pth",
          says="not a state dict")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("content, says", [("[1, 2]", "expected a JSON object"),
                                           ('{"miou": "12.5"}', "not a finite number"),
                                           ('{"miou": NaN}', "not a finite number")])
def test_summary_with_a_bad_metrics_file(tmp_path, capsys, content, says):
    path = tmp_path / "Source/seed0/metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    fails(capsys, "summary", "--eval", tmp_path, names=path, says=says)


@pytest.mark.parametrize("arg", [["--width", "0"], ["--height", "-5"], ["--iters", "0"], ["--batch", "0"]])
def test_bench_sizes(capsys, arg):
    fails(capsys, "bench", *arg, says=arg[0])


def test_evaluate_at_another_size_than_the_model(tiny, tmp_path, capsys):
    images, labels = write_prepared(tmp_path / "val96", n=2, size=(96, 64))
    fails(capsys, "evaluate", "--params", tiny["params"], "--quiet", "--model", tiny["model"], "--images", images,
          "--labels", labels, "--out", tmp_path / "eval", names=tiny["model"], says="was trained at 48x32")
    assert not (tmp_path / "eval").exists()


# --- signals and a dead run's leftovers ---------------------------------------------------------


def test_sigterm_cleans_up_and_exits_in_one_line(tiny, tmp_path):
    params = params_file(tmp_path, TINY_PARAMS.replace("iterations: 4", "iterations: 100000")
                         .replace("ckpt_every: 2", "ckpt_every: 1"))
    out = tmp_path / "run"
    args = _train(tiny, out, tiny["src_images"], tiny["src_labels"])
    args[2] = params
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "stvm", *map(str, args)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while not (out / "ckpt/last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until the run checkpoints (every step: a temporary comes and goes)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 143 and err.strip().splitlines() == ["stvm train_source: terminated"], err
    assert not [p for p in leftovers(out) if p.name.endswith(".tmp")]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_dead_runs_temporaries_are_removed_by_the_next_run(tiny, tmp_path, capsys):
    from stvm.io import _HOST

    out, pid = tmp_path / "run", _dead_pid()
    (out / "ckpt").mkdir(parents=True)
    partial = out / "ckpt" / f".last.pt.{_HOST}-{pid}.abc123.tmp"
    partial.write_bytes(b"\0" * 1000)  # what SIGKILL during torch.save leaves
    folder = tmp_path / f".prepared.{_HOST}-{pid}.xyz.tmp"
    (folder / "train/images").mkdir(parents=True)  # what SIGKILL during prepare leaves
    alive = out / "ckpt" / f".other.{_HOST}-{os.getpid()}.live.tmp"
    alive.write_bytes(b"")  # a live process's temporary is left alone
    assert main([str(a) for a in _train(tiny, out, tiny["src_images"], tiny["src_labels"])]) == 0
    assert not partial.exists() and alive.exists()
    raw = F.make_gta5(tmp_path / "raw", n=2)
    p = params_file(tmp_path, "prepare: {width: 16, height: 8, workers: 1}\n")
    assert main(["prepare", "--params", str(p), "--quiet", "--dataset", "gta5", "--root", str(raw.root),
                 "--out", str(tmp_path / "prepared")]) == 0
    assert not folder.exists() and (tmp_path / "prepared/manifest.json").is_file()
    capsys.readouterr()
