"""The ``stvm`` command line: every subcommand's arguments (the handlers are in ``stvm.cli``).

Why its own module: the argument table is long and changes with every option; keeping it apart
leaves ``stvm.cli`` as the handlers (one library call each) and the error handling around them.
Imports nothing heavy, so ``stvm --help`` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from stvm.config import MAX_SIDE, SHIFT_PART_NAMES, Params, check_value
from stvm.errors import StvmError
from stvm.variants import VARIANTS

DEFAULT_PARAMS = Path("params.yaml")


class UsageError(StvmError):
    """A command line argparse refuses (``stvm.cli.main`` prints it as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(None, f"{self.prog}: error: {message} (see {self.prog} --help)")


def number(section: str | type, name: str = "", lo: Any = None, hi: Any = None) -> Callable[[str], Any]:
    """An argparse type checked by ``config.check_value``, the params file's own check: that of field
    ``section.name`` (an option overriding it; a list field's range is per item), or, with ``section``
    a type (``int``), the range ``lo``..``hi`` of a number no params field holds (``bench --width``)."""
    if isinstance(section, str):
        cls = typing.get_type_hints(Params)[section]
        tp, meta = typing.get_type_hints(cls)[name], {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
        tp, key = (typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp), f"{section}.{name}"
    else:
        tp, meta, key = section, {"min": lo, "max": hi}, ""

    def parse(text: str) -> Any:
        try:
            return check_value(key, tp, tp(text), meta)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if tp is int else 'a number'}, got {text[:40]!r}") from None
        except StvmError as err:
            raise argparse.ArgumentTypeError(err.problem.removeprefix(": ")) from None
    return parse


def choices(section: str, name: str) -> list[Any]:
    """The values of a ``Literal`` params field (``--aspect``, ``--device``): the params file's own list."""
    cls = typing.get_type_hints(Params)[section]
    return list(typing.get_args(typing.get_type_hints(cls)[name]))


def _size(text: str) -> tuple[int, int]:
    """``WxH`` -> (W, H) for ``--input-size`` (each side in prepare.width's range)."""
    try:
        w, h = text.lower().split("x")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1024x512, got {text[:40]!r}") from None
    return number("prepare", "width")(w), number("prepare", "height")(h)


GROUPS: dict[str, tuple[str, ...]] = {  # the top-level help lists every command under one of these
    "pipeline stages (dvc.yaml and the Snakefile run them)": (
        "synth", "prepare", "train_source", "adapt", "evaluate", "report"),
    "your own models and frames": ("import", "predict", "export", "score"),
    "results and tools": ("summary", "compare", "synth_benchmark", "bench", "params", "deps"),
}
QUIET_HELP = "no progress bars or notes on stderr (results, warnings and errors still print)"
PARAMS_HELP = (f"params file (default: {DEFAULT_PARAMS} in the current folder if there is one, else the "
               "built-in defaults, the paper's: `stvm params` lists them); a file named here must exist")
Command = Callable[..., argparse.ArgumentParser]


def overview(names: Iterable[str]) -> str:
    """The top-level description: every command the parser has, by group (derived, so it lists what is there)."""
    names = list(names)
    grouped = {n for group in GROUPS.values() for n in group}
    lines = ["Source-free domain adaptation of semantic segmentation (STvM).", ""]
    for title, group in GROUPS.items():
        lines.append(f"{title}:\n  " + ", ".join(n for n in group if n in names))
    rest = [n for n in names if n not in grouped]
    if rest:
        lines.append("other:\n  " + ", ".join(rest))
    lines += ["", textwrap.fill("Every command takes --quiet; every command that reads parameters takes --params "
                                "FILE and --set SECTION.KEY=VALUE; every command that writes files takes --out. "
                                "`stvm COMMAND --help` describes one.", 100)]
    return "\n".join(lines)


def build_parser(handlers: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The full argument parser; ``handlers`` maps each command name to its handler function."""
    ap = _Parser(prog="stvm", formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, params: bool = True) -> argparse.ArgumentParser:
        """One subcommand with the common flags: --quiet always, --params and --set where it reads params."""
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--quiet", action="store_true", help=QUIET_HELP)
        if params:
            sp.add_argument("--params", type=Path, help=PARAMS_HELP)
            sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                            help="override one parameter of the params file (repeatable; validated like the file)")
        sp.set_defaults(fn=handlers[name])
        return sp

    _data(command)
    _stages(command)
    _own_data(command)
    _tools(command)
    ap.description = overview(sub.choices)
    return ap


def _data(command: Command) -> None:
    """synth and prepare: the data stages."""
    sp = command("synth", "Write the built-in synthetic benchmark (GTA5-format source, Cityscapes-format target).")
    sp.add_argument("--out", type=Path, required=True, help="output root (writes OUT/source and OUT/target)")
    sp.add_argument("--seed", type=number("synth", "seed"), help="override synth.seed")
    sp.add_argument("--only-part", choices=[*SHIFT_PART_NAMES, "none"],
                    help="keep only this part of the shift (at its synth.parts strength), the others off; "
                         "none = every part off (both domains drawn alike)")
    sp.add_argument("--preview", type=Path, help="also write a PNG preview of both domains")

    sp = command("prepare", "Read a raw dataset, remap labels to trainIds, resize, write a prepared dataset.")
    sp.add_argument("--dataset", required=True, choices=["gta5", "synthia", "cityscapes", "nthu", "folder"],
                    help="folder: every PNG/JPEG under --root (nested), e.g. your own frames")
    sp.add_argument("--root", type=Path, required=True, help="raw dataset root, exactly as distributed")
    sp.add_argument("--labels", type=Path, help="folder only: label PNGs at the images' relative paths (-> val)")
    sp.add_argument("--label-encoding", choices=["cityscapes", "trainids"],
                    help="folder only: Cityscapes ids (default) or trainIds in the label PNGs")
    sp.add_argument("--role", choices=["source", "target"],
                    help="take --labels/--label-encoding from params data.<role> (dvc.yaml passes it)")
    sp.add_argument("--out", type=Path, required=True, help="prepared dataset folder (must not exist)")
    sp.add_argument("--city", default="", help="NTHU Cross-City city: Rome, Rio, Tokyo or Taipei")
    sp.add_argument("--holdout", type=number("prepare", "source_holdout"),
                    help="override prepare.source_holdout (gta5/synthia only)")
    sp.add_argument("--aspect", choices=choices("prepare", "aspect"),
                    help="override prepare.aspect: a frame of another aspect ratio than prepare.width:height is "
                         "stretched (warns with the count), centre-cropped or padded")
    sp.add_argument("--workers", type=number("prepare", "workers"), help="override prepare.workers")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _stages(command: Command) -> None:
    """train_source, adapt, evaluate and report: the method's stages and the report over them."""
    sp = command("train_source", "Supervised training of the source model on a prepared labelled split.")
    sp.add_argument("--images", type=Path, required=True)
    sp.add_argument("--labels", type=Path, required=True)
    sp.add_argument("--out", type=Path, required=True, help="run folder: model.pt, ckpt/, plots/")
    sp.add_argument("--seed", type=number("common", "seed"), help="override common.seed")
    sp.add_argument("--stop-after", type=number(int, lo=1), help=argparse.SUPPRESS)

    sp = command("adapt", "STvM source-free adaptation (or an ablation variant) on unlabeled target images.")
    sp.add_argument("--variant", required=True, choices=list(VARIANTS))
    sp.add_argument("--source-model", type=Path, required=True, help="source model.pt (stvm format)")
    sp.add_argument("--target-images", type=Path, required=True, help="prepared target train images (no labels)")
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--seed", type=number("common", "seed"), help="override common.seed")
    sp.add_argument("--stop-after", type=number(int, lo=1), help=argparse.SUPPRESS)

    sp = command("evaluate", "mIoU (per protocol, single- or multi-scale) of a model on prepared target val.")
    sp.add_argument("--model", type=Path, required=True)
    sp.add_argument("--images", type=Path, required=True)
    sp.add_argument("--labels", type=Path, required=True)
    sp.add_argument("--out", type=Path, required=True, help="folder: metrics.json (+ predictions)")
    sp.add_argument("--input-size", type=_size, metavar="WxH",
                    help="resize the images to WxH (default: the prepared images' own size, which must be "
                         "the size the model was trained at); a stated override, recorded in metrics.json")

    sp = command("report", "Report of a pipeline run: paper-style tables, curves, panels, provenance (md, html, CSV); "
                 "needs a params file (it records which).")
    sp.add_argument("--eval", type=Path, default=Path("results/eval"), help="folder of <run>/seed<k>/metrics.json")
    sp.add_argument("--models", type=Path, default=Path("results/models"),
                    help="folder of <run>/seed<k>/ (metrics, plots, model.pt)")
    sp.add_argument("--prepared", type=Path, default=Path("data/prepared"),
                    help="prepared datasets (<role>/manifest.json, target/val)")
    sp.add_argument("--synth", type=Path, help="synthetic benchmark summary (data/raw/synth/synth.json), if used")
    sp.add_argument("--out", type=Path, default=Path("results/report"), help="report folder (replaced as a whole)")


def _own_data(command: Command) -> None:
    """import, predict, export and score: models and frames from outside the pipeline."""
    sp = command("import", "Import a source model trained elsewhere: AdaptSegNet/ADVENT DeepLabV2 .pth, "
                 "torchvision deeplabv3_resnet50, or an stvm file of another version.")
    sp.add_argument("--pth", type=Path, required=True, help="the foreign checkpoint (loaded weights-only)")
    sp.add_argument("--out", type=Path, required=True, help="stvm model.pt to write (e.g. results/models/Source/seed0/model.pt)")
    sp.add_argument("--source", choices=["deeplabv2", "torchvision-deeplabv3", "stvm"], default="deeplabv2",
                    help="deeplabv2: AdaptSegNet/ADVENT DeepLabV2-R101 (default); torchvision-deeplabv3: a "
                         "torchvision deeplabv3_resnet50 state dict; stvm: an stvm model, train or adapt checkpoint "
                         "of another version")
    sp.add_argument("--replace-head", action="store_true",
                    help="torchvision-deeplabv3: replace a head of another class count (21 COCO/VOC classes) by a "
                         "fresh random one (warns; train it before adapting)")
    sp.add_argument("--protocol", type=int, choices=[19, 16, 13],
                    help="class protocol (default common.protocol; stvm files keep theirs)")
    sp.add_argument("--aspp-branches", type=int, choices=[1, 2, 3, 4], help="2 for AdaptSegNet checkpoints (docs/REPRODUCE.md)")

    sp = command("predict", "Segment every PNG/JPEG under a folder at its own size (trainId, colour and overlay "
                 "PNGs; resumable); says once what size the model was trained at.")
    sp.add_argument("--model", type=Path, required=True, help="stvm model.pt (source, adapted or imported)")
    sp.add_argument("--images", type=Path, required=True, help="folder of images (nested folders are read too)")
    sp.add_argument("--out", type=Path, required=True, help="folder: pred/, color/, overlay/ (+ maps), predict.json")
    sp.add_argument("--scales", type=number("evaluate", "scales"), nargs="+", help="MST scales (override evaluate.scales)")
    sp.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="average with the flipped input")
    sp.add_argument("--batch-size", type=number("evaluate", "batch_size"),
                    help="images per batch (equal sizes only; override evaluate.batch_size)")
    sp.add_argument("--maps", action="store_true", help="also write the teacher's confidence and, when the checkpoint "
                    "carries M, the reliability map")
    sp.add_argument("--device", choices=choices("common", "device"), help="override common.device")
    sp.add_argument("--overwrite", action="store_true", help="replace predictions made with another model/settings")

    sp = command("export", "Export a model to TorchScript or ONNX, checked against PyTorch's logits, with its "
                 "preprocessing in FILE.json (common.threads threads).")
    sp.add_argument("--model", type=Path, required=True, help="stvm model.pt")
    sp.add_argument("--out", type=Path, required=True, help="FILE.onnx (ONNX) or FILE.pt/.ts (TorchScript)")
    sp.add_argument("--format", choices=["onnx", "torchscript"], help="override the format the suffix implies")
    sp.add_argument("--opset", type=number(int, lo=7, hi=20), default=17, help="ONNX opset, 7 to 20 (default 17)")

    sp = command("score", "Score a folder of trainId prediction PNGs against labels (JSON on stdout, and in --out).")
    sp.add_argument("--pred", type=Path, required=True)
    sp.add_argument("--gt", type=Path, required=True)
    sp.add_argument("--protocol", type=int, choices=[19, 16, 13], help="override common.protocol")
    sp.add_argument("--out", type=Path, help="also write the scores to this JSON file")


def _tools(command: Command) -> None:
    """Tables over finished runs, the benchmarks, the parameter table and the DAG files' code lists."""
    sp = command("summary", "Table IV-style ablation (mean ± std, min over seeds) from metrics files (reads no "
                 "params: the metrics files are the record).", params=False)
    sp.add_argument("--eval", type=Path, default=Path("results/eval"), help="folder of <run>/seed<k>/metrics.json")
    sp.add_argument("--metric", default="miou", help="metric key (e.g. miou, miou13)")
    sp.add_argument("--out", type=Path, help="also write OUT/<run>.json (mean, std, min, seeds; a DVC metrics folder)")

    sp = command("compare", "DVC experiments side by side: differing params, per-run mean ± std (min) mIoU (`dvc exp "
                 "show` without the dependency-hash columns; reads every experiment's params from DVC, writes "
                 "nothing).", params=False)
    sp.add_argument("--from", dest="saved", type=Path, help="read saved `dvc exp show --json` output instead of running dvc")
    sp.add_argument("-A", "--all-commits", action="store_true", help="experiments of all commits (dvc exp show -A)")

    sp = command("synth_benchmark", "The synthetic benchmark tier (resumable; docs/BENCHMARKS.md; needs a params file). "
                 "Preset configs/synth_benchmark/paper_geometry.yaml: phases geometry, shift (frozen from "
                 "Source/AdaBN/Oracle), curves, table; preset calibrated.yaml: phases calibrate, ablation.")
    sp.add_argument("--out", type=Path, default=Path("results/benchmark"), help="output folder (default: results/benchmark)")
    sp.add_argument("--phase", choices=["all", "geometry", "shift", "curves", "table", "calibrate", "ablation"],
                    default="all", help="one phase; all: geometry, shift, curves and table in order (default)")
    sp.add_argument("--budget", type=number("adapt", "iterations"), help="the table phase's adaptation iterations, the "
                    "same for every variant (default: the curves' plateau, fixed in table/budget.json before any table run)")
    sp.add_argument("--jobs", type=number(int, lo=1, hi=64), default=1, help="steps run at once, each with common.threads "
                    "threads (default 1; the results do not depend on it)")

    sp = command("bench", "Throughput, peak memory and loop overhead (a benchmark, not a test; common.threads "
                 "threads on common.device; writes only temporaries).")
    sp.add_argument("--stage", choices=["train", "adapt", "threads"], default="train",
                    help="threads: concurrent jobs with and without thread control")
    sp.add_argument("--arch", default="deeplabv2_r18")
    sp.add_argument("--width", type=number(int, lo=8, hi=MAX_SIDE), default=256)
    sp.add_argument("--height", type=number(int, lo=8, hi=MAX_SIDE), default=128)
    sp.add_argument("--batch", type=number(int, lo=1, hi=4096), default=2)
    sp.add_argument("--iters", type=number(int, lo=1, hi=10**6), default=10)
    sp.add_argument("--device", choices=choices("common", "device"), help="override common.device")
    sp.add_argument("--jobs", type=number(int, lo=1, hi=256), default=2, help="--stage threads: concurrent processes")
    sp.add_argument("--threads", type=number("common", "threads"),
                    help="--stage threads: threads per process when controlled (default: common.threads)")
    sp.add_argument("--crop", type=number(int, lo=8, hi=MAX_SIDE), default=64, help="--stage threads: crop size (the demo's)")

    sp = command("params", "Validate the params file (or the built-in defaults, with --set applied) and print every "
                 "parameter with its default and meaning; with --out, write the validated file instead, merged "
                 "over its _base_ (`make paper`: a configs/paper overlay as the params.yaml DVC tracks).")
    sp.add_argument("--out", type=Path, help="write the params file here (its _base_ merged in, --set applied), "
                    "not the table")

    sp = command("deps", "Code files each stage command imports (the DAG files' code dependencies); --write "
                 "rewrites dvc.yaml's in place (the Snakemake rules compute theirs when parsed).", params=False)
    sp.add_argument("command_names", nargs="*", metavar="COMMAND", help="stage command(s), e.g. adapt")
    sp.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code entries")
    sp.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml's code entries are out of date or a "
                    "Snakemake rule computes its code for another command than it runs")
