"""``stvm predict``: segment every image of a folder at its own size with a source or adapted model.

Output (flat names as ``prepare --dataset folder`` gives them: ``cam1/f001.jpg`` -> ``cam1__f001``)::

    out/pred/<stem>.png         trainIds (0-18), the image's own width x height
    out/color/<stem>.png        Cityscapes colours
    out/overlay/<stem>.png      the image blended 50/50 with the colours
    out/confidence/<stem>.png   with maps: teacher's max softmax (network's own without a teacher), x255
    out/reliability/<stem>.png  with maps, when the checkpoint carries M: Eq. 4 reliability, x255
    out/predict.json            model sha256, settings, counts, wall time

Every frame is segmented at its own size; predict says once what size the model was trained at and
how many frames differ (``size_note``; recorded in ``predict.json``). Inference is
``stvm.evaluate.inference.predict_logits`` (the evaluate stage's MST/flip); images of
equal size are batched. Every file is written atomically, ``pred/`` last, and each ``pred/`` PNG
records the sha256 of the image bytes it was predicted from (a ``tEXt`` chunk): a rerun skips an
image only when all its outputs exist and its bytes are unchanged, so an interrupted run loses
nothing and a frame changed under the same name is predicted again. A rerun with another model or
settings into the same folder is refused (``overwrite`` replaces the old predictions, never files
predict did not write) so no stale file is mixed in. ``out`` may not overlap the model or images.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from stvm.data.labels import PROTOCOL_CLASSES, colorize
from stvm.data.images import normalize, read_bytes, write_png
from stvm.data.readers import IMAGE_SUFFIXES, decode_image, tree_stems
from stvm.digest import file_sha256
from stvm.errors import StvmError
from stvm.evaluate.inference import predict_logits
from stvm.evaluate.nets import LoadedNets, confidence_map, load_nets, reliability_map, to_u8
from stvm.io import read_json, refuse_foreign, refuse_overlap, write_json
from stvm.progress import ProgressBar
from stvm.runtime import autocast, resolve_device

OUTPUT_DIRS = ("pred", "color", "overlay", "confidence", "reliability")
SOURCE_KEY = "stvm-source-sha256"  # tEXt chunk of pred/<stem>.png: sha256 of the image bytes it was predicted from


def _claim(out: Path, run: dict[str, Any], overwrite: bool) -> None:
    """Make ``out`` ours for ``run``: refuse predictions of another model/settings unless overwriting."""
    record = out / "predict.json"
    if record.exists() and not overwrite:
        old = read_json(record).get("run")
        if old != run:
            changed = sorted(k.replace("_sha256", "") for k in run if not isinstance(old, dict) or old.get(k) != run[k])
            raise StvmError(
                record, f"holds predictions made with another {', '.join(changed) or 'run'} "
                "(pass --overwrite to replace them, or choose another --out)")
    if overwrite:
        refuse_foreign(out, [f"{d}/*.png" for d in OUTPUT_DIRS], "--overwrite replaces only predict's own "
                       "outputs, and would delete them: move them or choose another --out", scope=OUTPUT_DIRS)
        for name in OUTPUT_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
    write_json(record, {"run": run, "finished": False})


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header (no decoding); an unreadable file names itself."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise StvmError(path, f"unreadable or corrupt image file ({str(err)[:160]})") from None


def _read(path: Path) -> tuple[np.ndarray, str]:
    """An image and the sha256 of the very bytes it was decoded from."""
    data = read_bytes(path)
    return decode_image(data, path), hashlib.sha256(data).hexdigest()


def _batches(images: dict[str, Path], sizes: dict[str, tuple[int, int]], todo: list[str],
             batch_size: int) -> Iterator[list[tuple[str, np.ndarray, str]]]:
    """The images still to do, grouped by size into batches of at most ``batch_size``, read lazily."""
    by_size: dict[tuple[int, int], list[str]] = {}
    for stem in todo:
        by_size.setdefault(sizes[stem], []).append(stem)
    for group in by_size.values():
        for i in range(0, len(group), batch_size):
            yield [(stem, *_read(images[stem])) for stem in group[i: i + batch_size]]


def training_size(meta: dict) -> tuple[int, int] | None:
    """The (W, H) a checkpoint records it was trained at (None for an imported model)."""
    size = meta.get("input_size")
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) and len(size) == 2 else None


def size_note(model_path: Path, trained: tuple[int, int] | None, sizes: dict[str, tuple[int, int]]) -> tuple[str, bool]:
    """The one line predict says about frame sizes (the model's training size, from its checkpoint,
    and what is done with frames of another size), and whether it is a warning (some differ)."""
    if trained is None:
        return (f"{model_path} records no training size (imported?); each frame is segmented at its "
                "own size", False)
    other = sorted({s for s in sizes.values() if s != trained})
    w, h = trained
    if not other:
        return f"{model_path} was trained on {w}x{h} frames, the size of every frame here", False
    count = sum(1 for s in sizes.values() if s != trained)
    shown = ", ".join(f"{a}x{b}" for a, b in other[:3]) + (", ..." if len(other) > 3 else "")
    return (f"{model_path} was trained on {w}x{h} frames; {count} of {len(sizes)} frames here are another "
            f"size ({shown}) and are segmented at their own size, not resized (objects at another scale than "
            f"in training may segment worse; `stvm prepare` resizes frames to {w}x{h})", True)


def _outputs(out: Path, stem: str, maps: list[str]) -> list[Path]:
    return [out / d / f"{stem}.png" for d in ("pred", "color", "overlay", *maps)]


def _source_digest(pred: Path) -> str | None:
    """The sha256 recorded in a ``pred/`` PNG (None when absent or unreadable: predict it again)."""
    try:
        with Image.open(pred) as im:
            return im.info.get(SOURCE_KEY)
    except (OSError, SyntaxError, ValueError):
        return None


def _done(out: Path, stem: str, image: Path, maps: list[str]) -> bool:
    """Every output of ``stem`` exists and its prediction was made from ``image``'s current bytes."""
    return (all(p.exists() for p in _outputs(out, stem, maps))
            and _source_digest(out / "pred" / f"{stem}.png") == file_sha256(image))


def _write(out: Path, stem: str, img: np.ndarray, digest: str, pred: np.ndarray, nets: LoadedNets, x: torch.Tensor,
           maps: list[str]) -> None:
    """Every output file of one image (maps computed single-scale on ``x``, 1x3xHxW), the prediction
    last, recording ``digest``: a prediction that exists was finished together with the others."""
    color = colorize(pred, 19)
    write_png(out / "color" / f"{stem}.png", color)
    overlay = (img.astype(np.uint16) + color.astype(np.uint16) + 1) // 2
    write_png(out / "overlay" / f"{stem}.png", overlay.astype(np.uint8))
    for name in maps:
        values = confidence_map(nets, x) if name == "confidence" else reliability_map(nets, x)
        write_png(out / name / f"{stem}.png", to_u8(values))
    write_png(out / "pred" / f"{stem}.png", pred, text={SOURCE_KEY: digest})


def predict_folder(
    model_path: Path,
    images: Path,
    out: Path,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    batch_size: int = 4,
    maps: bool = False,
    device: str = "auto",
    overwrite: bool = False,
    show_progress: bool = True,
    note: Callable[[str, bool], None] | None = None,
) -> dict[str, Any]:
    """Predict every PNG/JPEG under ``images`` (nested) into ``out``; return the summary it records.

    ``scales``/``flip`` are the evaluate stage's MST options; ``maps`` also writes the confidence
    map and, when the checkpoint carries M, the reliability map. Finished images are skipped.
    ``note`` receives ``size_note`` once, before any prediction (the line and whether it is a warning).
    """
    t0 = time.perf_counter()
    model_path, images, out = Path(model_path), Path(images), Path(out)
    if not images.is_dir():
        raise StvmError(images, "image folder not found")
    refuse_overlap(out, [model_path, images])
    found = tree_stems(images, IMAGE_SUFFIXES)
    if not found:
        raise StvmError(images, "no images found (PNG or JPEG, searched recursively)")
    dev = resolve_device(device)
    nets = load_nets(model_path, dev)
    protocol = int(nets.meta.get("protocol", 19))
    to_trainid = torch.tensor(PROTOCOL_CLASSES[protocol], dtype=torch.int64, device=dev)
    if nets.model.num_classes != len(to_trainid):
        raise StvmError(model_path, f"model outputs {nets.model.num_classes} classes but its protocol "
                        f"{protocol} needs {len(to_trainid)}")
    kinds = (["confidence"] + (["reliability"] if nets.metric is not None else [])) if maps else []
    run = {"model_sha256": file_sha256(model_path), "scales": [float(s) for s in scales], "flip": bool(flip),
           "maps": kinds}
    sizes = {stem: _image_size(path) for stem, path in found.items()}  # headers only
    trained = training_size(nets.meta)
    if note is not None:
        note(*size_note(model_path, trained, sizes))
    _claim(out, run, overwrite)
    todo = [s for s in found if not _done(out, s, found[s], kinds)]
    with ProgressBar(len(todo), "predict", enabled=show_progress) as bar, torch.inference_mode(), autocast(dev):
        for batch in _batches(found, sizes, todo, batch_size):
            x = torch.stack([normalize(img) for _, img, _ in batch]).to(dev)
            prob = predict_logits(nets.model, x, tuple(x.shape[-2:]), scales, flip)
            preds = to_trainid[prob.argmax(dim=1)].to(torch.uint8).cpu().numpy()
            for i, (stem, img, digest) in enumerate(batch):
                _write(out, stem, img, digest, preds[i], nets, x[i: i + 1], kinds)
            bar.update(len(batch))
    seconds = time.perf_counter() - t0
    summary = {"run": run, "model": str(model_path), "finished": True, "images": len(found), "predicted": len(todo),
               "skipped": len(found) - len(todo), "device": str(dev), "wall_seconds": round(seconds, 2),
               "teacher": nets.teacher is not None, "metric_head": nets.metric is not None,
               "training_size": list(trained) if trained else None,
               "other_size_frames": sum(1 for s in sizes.values() if s != trained) if trained else None}
    write_json(out / "predict.json", summary)
    return summary
