"""Tiny, format-faithful raw datasets (GTA5, SYNTHIA, Cityscapes, NTHU) written to a temp folder.

Each maker writes the real layout and encoding (shared/research/formats.md), with labels that hold
every raw id of the encoding (including the ids every protocol ignores), and can inject one defect
into the middle frame of the first split. ``RawDataset.raw`` keeps the raw ids written per stem so
tests can compute the expected trainIds independently of the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SIZE = (40, 24)  # (width, height) of every raw frame

# Defects the makers can inject (not every one applies to every dataset).
DEFECTS = (
    "missing_label",  # an image without its label
    "extra_label",  # a label without its image
    "size_mismatch",  # label 2 rows shorter than its image (like GTA5's 1914x1046 frames)
    "corrupt_image",  # truncated image PNG
    "corrupt_label",  # label file with garbage bytes
    "zero_image",  # zero-byte image file (interrupted download)
    "bad_id",  # a label id outside the encoding's valid range
    "rgb_label",  # GTA5/Cityscapes/NTHU label saved as RGB instead of P/L
    "gray_label",  # SYNTHIA label saved as a single 16-bit channel
    "rgba_label",  # SYNTHIA label with 4 channels
    "gray_image",  # single-channel image
    "empty",  # folders present but no frames
)


@dataclass
class RawDataset:
    root: Path
    stems: dict[str, list[str]]  # raw split name -> sorted stems
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # stem -> raw class ids written
    bad: Path | None = None  # the file the defect concerns (the one an error must name)


def cityscapes_palette() -> list[int]:
    """A 768-entry palette with the official Cityscapes colour of every label id 0..33."""
    from cityscapesscripts.helpers.labels import id2label

    palette = [0] * 768
    for i in range(34):
        palette[3 * i : 3 * i + 3] = id2label[i].color
    return palette


def random_ids(
    rng: np.random.Generator, ids: list[int], size: tuple[int, int], block: int = 1
) -> np.ndarray:
    """HxW uint8 map of ``ids`` in constant ``block``-sized squares, every id present if it fits."""
    w, h = size[0] // block, size[1] // block
    grid = rng.choice(np.asarray(ids, dtype=np.uint8), size=h * w)
    k = min(len(ids), h * w)
    grid[:k] = rng.permutation(np.asarray(ids, dtype=np.uint8))[:k]
    grid = grid.reshape(h, w)
    return np.kron(grid, np.ones((block, block), dtype=np.uint8)).astype(np.uint8)


def random_rgb(rng: np.random.Generator, size: tuple[int, int], block: int = 1) -> np.ndarray:
    """HxWx3 uint8 RGB noise in constant ``block`` squares."""
    small = rng.integers(0, 256, size=(size[1] // block, size[0] // block, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_p(path: Path, ids: np.ndarray) -> None:
    """8-bit palettized PNG (PIL mode P) whose palette indices are the ids (the GTA5 encoding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.frombytes(
        "P", (ids.shape[1], ids.shape[0]), np.ascontiguousarray(ids, dtype=np.uint8).tobytes()
    )
    im.putpalette(cityscapes_palette())
    im.save(path)


def write_l(path: Path, ids: np.ndarray) -> None:
    """8-bit greyscale PNG (PIL mode L): Cityscapes ``*_labelIds.png``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8)).save(path)


def write_synthia_label(path: Path, ids: np.ndarray, rng: np.random.Generator) -> None:
    """16-bit 3-channel PNG: class in R, junk (instance-like values) in G and B."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 65536, size=(*ids.shape, 3), dtype=np.uint16)
    arr[:, :, 2] = ids  # OpenCV order is BGR: index 2 is R
    assert cv2.imwrite(str(path), arr)


def _defect_label(defect: str | None, ids: np.ndarray, bad_id: int) -> np.ndarray:
    if defect == "size_mismatch":
        return ids[:-2]
    if defect == "bad_id":
        ids = ids.copy()
        ids[0, :2] = bad_id
        ids[1, 0] = bad_id + 7
    return ids


def _apply_file_defect(
    defect: str | None, image: Path, label: Path, rgb: np.ndarray
) -> Path | None:
    """Apply a defect that acts on whole files; return the file an error must name."""
    if defect == "missing_label":
        label.unlink()
        return image
    if defect == "extra_label":
        image.unlink()
        return label
    if defect == "corrupt_image":
        image.write_bytes(image.read_bytes()[:60])
        return image
    if defect == "zero_image":
        image.write_bytes(b"")
        return image
    if defect == "corrupt_label":
        label.write_bytes(b"not a png at all" * 4)
        return label
    if defect == "gray_image":
        assert cv2.imwrite(str(image), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        return image
    if defect in ("size_mismatch", "bad_id", "rgb_label", "gray_label", "rgba_label"):
        return label
    return None


def _pairs(
    root: Path,
    frames: list[tuple[str, Path, Path]],
    ids_pool: list[int],
    write_label,
    bad_id: int,
    defect: str | None,
    seed: int,
    block: int,
    split: str = "all",
) -> RawDataset:
    """Write (stem, image path, label path) frames; inject ``defect`` into the middle one."""
    rng = np.random.default_rng(seed)
    data = RawDataset(root, {split: sorted(s for s, _, _ in frames)})
    for k, (stem, image, label) in enumerate(frames):
        this = defect if k == len(frames) // 2 else None
        rgb = random_rgb(rng, SIZE, block)
        ids = random_ids(rng, ids_pool, SIZE, block)
        write_rgb(image, rgb)
        written = _defect_label(this, ids, bad_id)
        write_label(label, written, rng, this)
        data.raw[stem] = written
        data.bad = _apply_file_defect(this, image, label, rgb) or data.bad
    return data


def _indexed_writer(mode: str):
    def write(path: Path, ids: np.ndarray, rng: np.random.Generator, defect: str | None) -> None:
        if defect == "rgb_label":
            write_rgb(path, np.stack([ids] * 3, axis=-1))
        else:
            (write_p if mode == "P" else write_l)(path, ids)

    return write


def _synthia_writer(
    path: Path, ids: np.ndarray, rng: np.random.Generator, defect: str | None
) -> None:
    if defect == "gray_label":
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), ids.astype(np.uint16))
    elif defect == "rgba_label":
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = np.zeros((*ids.shape, 4), dtype=np.uint16)
        arr[:, :, 2], arr[:, :, 3] = ids, 65535
        assert cv2.imwrite(str(path), arr)
    else:
        write_synthia_label(path, ids, rng)


def make_gta5(
    root: Path,
    n: int = 5,
    defect: str | None = None,
    seed: int = 0,
    block: int = 1,
    label_mode: str = "P",
) -> RawDataset:
    """GTA5: ``images/NNNNN.png`` RGB + ``labels/NNNNN.png`` P-mode with Cityscapes ids 0..34."""
    if defect == "empty":
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir(parents=True)
        return RawDataset(root, {"all": []}, bad=root / "images")
    frames = [
        (f"{i:05d}", root / "images" / f"{i:05d}.png", root / "labels" / f"{i:05d}.png")
        for i in range(1, n + 1)
    ]
    return _pairs(
        root, frames, list(range(35)), _indexed_writer(label_mode), 35, defect, seed, block
    )


def make_synthia(
    root: Path, n: int = 5, defect: str | None = None, seed: int = 0, block: int = 1
) -> RawDataset:
    """SYNTHIA-RAND-CITYSCAPES: ``RGB/NNNNNNN.png`` + ``GT/LABELS/NNNNNNN.png`` (16-bit, R=id)."""
    if defect == "empty":
        (root / "RGB").mkdir(parents=True)
        (root / "GT" / "LABELS").mkdir(parents=True)
        return RawDataset(root, {"all": []}, bad=root / "RGB")
    frames = [
        (f"{i:07d}", root / "RGB" / f"{i:07d}.png", root / "GT" / "LABELS" / f"{i:07d}.png")
        for i in range(n)
    ]
    return _pairs(root, frames, list(range(23)), _synthia_writer, 23, defect, seed, block)


CITYSCAPES_CITIES = {
    "train": {"aachen": 2, "bochum": 1},
    "val": {"frankfurt": 2, "lindau": 1},
    "test": {"berlin": 1},
}


def _cityscapes_extras(label: Path, ids: np.ndarray) -> None:
    """The other gtFine files next to ``*_labelIds.png`` (instanceIds 16-bit, color, polygons)."""
    base = str(label)[: -len("_labelIds.png")]
    inst = ids.astype(np.uint16)
    inst[ids >= 24] = inst[ids >= 24] * 1000 + 1  # hasInstances classes hold id*1000+k
    assert cv2.imwrite(base + "_instanceIds.png", inst)
    write_p(Path(base + "_color.png"), ids)
    Path(base + "_polygons.json").write_text("{}")


def make_cityscapes(
    root: Path, defect: str | None = None, seed: int = 0, block: int = 1
) -> RawDataset:
    """Cityscapes ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` + ``gtFine/.../*_labelIds.png``.

    The defect goes into the train split; the test split (ignored by prepare) has images and labels.
    """
    data = RawDataset(root, {})
    for i, (split, cities) in enumerate(CITYSCAPES_CITIES.items()):
        if split == "train" and defect == "empty":
            (root / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
            (root / "gtFine" / "train" / "aachen").mkdir(parents=True)
            data.stems["train"], data.bad = [], root / "leftImg8bit" / "train"
            continue
        frames = []
        for city, count in cities.items():
            for f in range(count):
                stem = f"{city}_{f:06d}_{19 + f:06d}"
                frames.append(
                    (
                        stem,
                        root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                        root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                    )
                )
        part = _pairs(
            root,
            frames,
            list(range(34)),
            _indexed_writer("L"),
            34,
            defect if split == "train" else None,
            seed + i,
            block,
            split,
        )
        for _, _, label in frames:
            if label.exists() and label != part.bad:
                _cityscapes_extras(
                    label, part.raw[Path(label).name[: -len("_gtFine_labelIds.png")]]
                )
        data.stems.update(part.stems)
        data.raw.update(part.raw)
        data.bad = data.bad or part.bad
    return data


def make_nthu(
    root: Path,
    city: str = "Rome",
    n_train: int = 3,
    n_test: int = 3,
    defect: str | None = None,
    seed: int = 0,
    block: int = 1,
    train_ext: str = ".jpg",
    label_mode: str = "L",
) -> RawDataset:
    """NTHU: ``{city}/Images/Train/*.jpg`` (unlabeled), ``Images/Test/*.png``, ``*_eval.png``."""
    rng = np.random.default_rng(seed + 100)
    train_dir = root / city / "Images" / "Train"
    train = [f"pano_{i:05d}_0_180" for i in range(n_train)]
    for stem in train:
        write_rgb(train_dir / f"{stem}{train_ext}", random_rgb(rng, SIZE, block))
    if defect == "empty":
        (root / city / "Images" / "Test").mkdir(parents=True)
        (root / city / "Labels" / "Test").mkdir(parents=True)
        return RawDataset(root, {"train": train, "test": []}, bad=root / city / "Images" / "Test")
    frames = [
        (
            f"pano_{i:05d}_1_180",
            root / city / "Images" / "Test" / f"pano_{i:05d}_1_180.png",
            root / city / "Labels" / "Test" / f"pano_{i:05d}_1_180_eval.png",
        )
        for i in range(n_test)
    ]
    data = _pairs(
        root, frames, list(range(34)), _indexed_writer(label_mode), 34, defect, seed, block, "test"
    )
    data.stems["train"] = train
    return data
