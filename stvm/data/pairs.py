"""Pairing the files of two flat PNG folders by stem (predictions with ground truth, images with labels).

A file ``<stem>.png`` of the first folder is matched to the second folder's ``<stem>.png`` or, for
Cityscapes-style ground truth (``gt_names``), ``<stem>_gtFine_labelTrainIds.png`` (both present: an
error). The other Cityscapes companions (``*_gtFine_labelIds``, ``*_gtFine_instanceIds``,
``*_gtFine_color``) are skipped: they are not trainIds. Every file of either side must have a partner,
because a silently skipped image changes a score; a leftover is an error naming the first one.
Used by ``stvm score`` and by evaluation, so it lives with the data code below both.
"""

from __future__ import annotations

from pathlib import Path

from stvm.errors import StvmError

GT_SUFFIX = "_gtFine_labelTrainIds"
_GT_COMPANIONS = ("_gtFine_labelIds", "_gtFine_instanceIds", "_gtFine_color")


def _png_index(folder: Path, what: str, gt_names: bool) -> dict[str, Path]:
    """Map stem -> path of the PNGs in ``folder`` (GT naming rules when ``gt_names``)."""
    if not folder.is_dir():
        raise StvmError(folder, f"{what} folder not found")
    index: dict[str, Path] = {}
    for path in sorted(folder.glob("*.png")):
        stem = path.stem
        if gt_names and stem.endswith(_GT_COMPANIONS):
            continue
        if gt_names and stem.endswith(GT_SUFFIX):
            stem = stem[: -len(GT_SUFFIX)]
        if stem in index:
            raise StvmError(path, f"{what} stem '{stem}' also used by {index[stem].name}")
        index[stem] = path
    if not index:
        raise StvmError(folder, f"no {what} PNG files")
    return index


def _leftover_error(
    index: dict[str, Path], stems: list[str], what: str, other: str, other_dir: Path
) -> StvmError:
    more = f" (and {len(stems) - 1} more)" if len(stems) > 1 else ""
    return StvmError(
        index[stems[0]], f"no {other} for this {what} (expected {other_dir / stems[0]}.png){more}"
    )


def match_stems(
    first_dir: Path, second_dir: Path, *, first: str, second: str, gt_names: bool = False
) -> list[tuple[str, Path, Path]]:
    """Pair ``first_dir/<stem>.png`` with ``second_dir``'s file of the same stem, one to one.

    ``first``/``second`` name the two kinds in error messages ("prediction", "ground truth").
    ``gt_names`` applies the ground-truth naming rules of the module docstring to ``second_dir``.
    Returns ``(stem, first_path, second_path)`` sorted by stem.
    """
    a = _png_index(Path(first_dir), first, gt_names=False)
    b = _png_index(Path(second_dir), second, gt_names=gt_names)
    if missing := sorted(a.keys() - b.keys()):
        raise _leftover_error(a, missing, first, second, Path(second_dir))
    if extra := sorted(b.keys() - a.keys()):
        raise _leftover_error(b, extra, second, first, Path(first_dir))
    return [(stem, a[stem], b[stem]) for stem in sorted(a)]
