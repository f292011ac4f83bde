"""params.yaml -> frozen, validated dataclasses (one per section), checked once.

Configuration flows one way: ``load_params`` reads the YAML file once, rejects unknown keys, wrong
types and out-of-range values with an error naming the dotted key, and returns ``Params``. Library
functions then receive one section (or plain arguments), never the file name.

Field ``help`` metadata names the paper symbol and section where one exists; docs/PARAMS.md's table
is generated from it (``python -m stvm params``; tests/test_config.py checks it).

Why one file over 300 lines: it is the one table of every parameter (a dataclass per section with
its default, range and help), and the loader that validates them; splitting the table would give a
parameter two homes.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from stvm.errors import StvmError
from stvm.overrides import apply_override
from stvm.params_file import read_params_file
from stvm.variants import VARIANTS

# archs without pretrained weights (stvm.models.deeplab.NO_PRETRAINED; tests/test_config.py checks they agree)
NO_PRETRAINED = frozenset({"deeplabv2_tiny"})
SEED_MAX = 2**32 - 1  # NumPy's seed range; torch and Python accept it too
MAX_SIDE = 8192  # image sides (synth, prepare): stvm.limits.MAX_PIXELS is 8192 x 8192
SYNTH_MIN_SIDE = 32  # the generator draws a street scene; below this the objects vanish (stvm.data.synth checks it)
_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxlevel = 40, 40, 4, 4, 2


def show(value: Any) -> str:
    """A bounded repr of a user value for error messages (a value is never echoed whole)."""
    return _SHOW.repr(value)


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class CommonParams:
    seed: int = _f(0, "Seed of every stage (data order, crops, augmentation, init).", min=0, max=SEED_MAX)
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "Device; auto = cuda when available.")
    protocol: Literal[19, 16, 13] = _f(19, "Class protocol: 19 (GTA5), 16 (SYNTHIA, + mIoU* of 13), 13 (Cross-City).")
    num_workers: int = _f(0, "DataLoader worker processes.", min=0)
    threads: int = _f(1, "CPU threads per stage process (torch, OpenCV); Snakemake rules declare as many; "
                         "the params alone decide: OMP_NUM_THREADS is overwritten (docs/OPERATIONS.md 'Threads').", min=1)


@dataclass(frozen=True)
class ShiftParts:
    """Strength of each named part of the synthetic shift (stvm/data/synth_style.PART_FIELDS)."""

    appearance: float = _f(1.0, "Global look: palette, saturation, exposure, tint, light ramp, surface grain.", min=0.0)
    class_appearance: float = _f(0.0, "Classes restyled per domain (grey cars, autumn trees, brick sidewalks).", min=0.0)
    texture: float = _f(0.0, "Structured textures: bricks, tiles, road streaks, blotchy greenery.", min=0.0)
    shape: float = _f(0.0, "Object size and shape: smaller people, bikes, signs; taller vehicles.", min=0.0)
    layout: float = _f(1.0, "Camera, street geometry, building heights and class frequencies.", min=0.0)
    sensor: float = _f(1.0, "Sensor: blur, noise, vignetting.", min=0.0)


SHIFT_PART_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ShiftParts))


@dataclass(frozen=True)
class SynthParams:
    seed: int = _f(0, "Seed of the synthetic benchmark itself (fixed across experiment seeds).", min=0, max=SEED_MAX)
    n_source: int = _f(200, "Synthetic source (GTA5-format) frames.", min=1)
    n_target_train: int = _f(200, "Synthetic target (Cityscapes-format) unlabeled train frames.", min=1)
    n_target_val: int = _f(60, "Synthetic target val frames (labelled, evaluation only).", min=1)
    width: int = _f(256, "Frame width in pixels.", min=SYNTH_MIN_SIDE, max=MAX_SIDE)
    height: int = _f(128, "Frame height in pixels.", min=SYNTH_MIN_SIDE, max=MAX_SIDE)
    shift: float = _f(1.0, "Domain-shift strength (0 = same appearance in both domains).", min=0.0)
    parts: ShiftParts = field(default_factory=ShiftParts, metadata={
        "help": "Strength of each part of the shift, times `shift` (defaults: the generator before parts)."})
    object_size: float = _f(1.0, "Size of people, bikes, vehicles, signs, lights and pole widths in both domains.",
                            min=0.1, max=10.0)
    workers: int = _f(2, "Parallel writer processes.", min=1)


@dataclass(frozen=True)
class PrepareParams:
    width: int = _f(1024, "Training width after resize (paper IV-B: 1024x512).", min=8, max=MAX_SIDE)
    height: int = _f(512, "Training height after resize.", min=8, max=MAX_SIDE)
    eval_label_size: Literal["full", "train"] = _f("full", "Evaluation labels: keep full resolution or resize to training size.")
    source_holdout: int = _f(0, "Last N source frames held out as a source val split (0 = none).", min=0)
    mismatch: Literal["resize", "skip", "error"] = _f("resize", "Image/label size mismatch policy (GTA5 has a few).")
    aspect: Literal["stretch", "crop", "pad"] = _f(
        "stretch", "A frame of another aspect ratio than width:height: stretch it (the lineage's resize; prepare "
        "warns with the count), centre-crop it, or pad it (image: ImageNet mean, labels: ignore) before resizing.")
    workers: int = _f(2, "Parallel worker processes.", min=1)


@dataclass(frozen=True)
class TrainSourceParams:
    arch: Literal["deeplabv2_r101", "deeplabv3_r50", "deeplabv2_r18", "deeplabv3_r18", "deeplabv2_tiny"] = _f(
        "deeplabv2_r101", "Segmentation network (paper: DeepLabV2-R101 or DeepLabV3-R50).")
    init: str = _f("imagenet", "Backbone init: imagenet | random | path to a torchvision ResNet state_dict.")
    iterations: int = _f(20000, "Training iterations.", min=1)
    batch_size: int = _f(2, "Batch size (paper: 2).", min=1)
    crop: int = _f(512, "Square random crop side (paper: 512).", min=8)
    head_dilations: list[int] = _f(
        [], "Dilations of the classifier's branches (and M's); [] = the paper's (V2 6/12/18/24, V3 12/24/36). "
            "A small benchmark scales them to its feature maps (recorded in every checkpoint).", empty_ok=True)
    lr: float = _f(2.5e-4, "SGD learning rate of the feature extractor F (C uses 10x).", min=0.0)
    lr_head_mult: float = _f(10.0, "Classifier C learning rate multiplier.", min=0.0)
    momentum: float = _f(0.9, "SGD momentum.", min=0.0)
    weight_decay: float = _f(5e-4, "SGD weight decay.", min=0.0)
    poly_power: float = _f(0.9, "Poly learning-rate decay power.", min=0.0)
    hflip: bool = _f(True, "Random horizontal flip.")
    log_every: int = _f(20, "Iterations between progress/plot rows.", min=1)
    ckpt_every: int = _f(500, "Iterations between checkpoints.", min=1)
    snapshots: list[int] = _f(
        [], "Iterations at which a snapshot model is written (snapshots/it<N>.pt; evaluate scores them for "
            "the learning curve).", empty_ok=True)

    def __post_init__(self) -> None:
        if self.arch in NO_PRETRAINED and self.init == "imagenet":
            raise StvmError(None, f"train_source.init: {self.arch} has no ImageNet weights (an arch for tests and "
                                  "smoke runs); set init to random or the path of a state dict of its own layout")
        n = 4 if self.arch.startswith("deeplabv2") else 3
        if self.head_dilations and (len(self.head_dilations) != n or min(self.head_dilations) < 1):
            raise StvmError(None, f"train_source.head_dilations: {self.arch} needs {n} integers >= 1 (or [] for "
                                  f"the paper's), got {self.head_dilations}")
        check_snapshots("train_source", self.snapshots, self.iterations)

    def dilations(self) -> tuple[int, ...] | None:
        """The head geometry to build (None = the paper's)."""
        return tuple(self.head_dilations) or None


def check_snapshots(section: str, its: list[int], total: int) -> None:
    if any(not 1 <= i <= total for i in its) or list(its) != sorted(set(its)):
        raise StvmError(None, f"{section}.snapshots: expected increasing iterations in [1, {total}], got {its}")


@dataclass(frozen=True)
class AdaptParams:
    iterations: int = _f(20000, "Adaptation iterations (not stated in the paper; an open choice).", min=1)
    batch_size: int = _f(2, "Batch size (paper IV-B: 2).", min=1)
    crop: int = _f(512, "Random square crop after the resize (paper: 512).", min=8)
    lr: float = _f(2.5e-4, "Student SGD lr of F (paper IV-B: 2.5e-4).", min=0.0)
    lr_head: float = _f(2.5e-3, "Student SGD lr of C (paper IV-B: 2.5e-3).", min=0.0)
    momentum: float = _f(0.9, "SGD momentum, Nesterov (paper IV-B).", min=0.0)
    weight_decay: float = _f(5e-4, "SGD weight decay (paper IV-B).", min=0.0)
    lr_metric: float = _f(3e-4, "Adam lr of the metric network M and proxies (paper IV-B).", min=0.0)
    poly_power: float = _f(0.9, "Poly decay power of both optimisers (paper IV-B).", min=0.0)
    ema_interval: int = _f(100, "Teacher update interval in iterations (III-B / IV-B: 100).", min=1)
    ema_lambda: float = _f(1e-3, "Teacher smoothing factor lambda (IV-B: 1e-3).", min=0.0, max=1.0)
    ema_reading: Literal["smoothing", "refresh"] = _f(
        "smoothing", "What lambda weights: smoothing = the student (teacher <- (1-l) teacher + l student), "
        "refresh = the teacher (teacher <- l teacher + (1-l) student; open choice).")
    n_f: int = _f(128, "Metric feature size N_f (IV-B: 128).", min=1)
    temperature: float = _f(0.25, "NCA temperature T (Eq. 2; IV-B: 0.25).", min=1e-6)
    q_m: float = _f(0.2, "Metric pseudo-label percentile q_M (Eq. 1; IV-B: 0.2).", min=0.0, max=1.0)
    threshold_momentum: float = _f(0.9, "Moving-average momentum of the per-class thresholds (not stated).", min=0.0, max=1.0)
    samples_per_class: int = _f(64, "Metric pseudo-label samples per class per batch (balanced; not stated).", min=1)
    metric_sampling: Literal["per_class", "min_count"] = _f(
        "per_class", "Equal samples per class (III-C): per_class = samples_per_class of every present class, "
        "repeating a rare class's pixels; min_count = the rarest class's count for all (open choice).")
    metric_probe: bool = _f(
        True, "ST_MT trains an M alongside that its loss never uses (Table VII's ST_MT row; costs time).")
    alpha: float = _f(2.0, "Reverse-sigmoid sharpness alpha (Eq. 4; IV-B: 2).")
    beta: float = _f(0.6, "Reverse-sigmoid offset beta (Eq. 4; IV-B: 0.6).")
    tau_mocm: float = _f(0.8, "MOCM patch acceptance distance threshold (III-D; IV-B: 0.8).", min=0.0)
    n_mocm: int = _f(10, "Patches pasted per image N_MOCM (III-D: 10).", min=0)
    buffer_size: int = _f(50, "Per-class FIFO patch buffer size (IV-B: 50).", min=1)
    mocm_noise: Literal["before_paste", "after_paste"] = _f(
        "before_paste", "Photometric noise before MOCM (III-D's order: pasted patches stay clean) or after it "
        "(the pasted pixels get the noise too; open choice).")
    mocm_push: Literal["after_paste", "before_paste"] = _f(
        "after_paste", "When this batch's patches enter the MOCM buffers: after its own paste (never pasted "
        "onto itself) or before it (the earlier wiring, kept for comparison).")
    evaluated_network: Literal["teacher", "student"] = _f("student", "Network written as the adapted model (open choice).")
    metric_input: Literal["teacher", "student"] = _f("teacher", "Whose F features feed M (paper: teacher).")
    bn_init: Literal["source", "target"] = _f(
        "target", "BN statistics adaptation starts from: re-estimated on the target train images (AdaBN) "
        "or the source model's (open choice; docs/METHOD.md 'Open choices').")
    bn_mode: Literal["train", "frozen"] = _f(
        "frozen", "Student BN: fixed running statistics (frozen, as the DeepLabV2 lineage at batch 2) or "
        "batch statistics updating the running ones (train; open choice).")
    log_every: int = _f(20, "Iterations between progress/plot rows.", min=1)
    ckpt_every: int = _f(500, "Iterations between checkpoints.", min=1)
    snapshots: list[int] = _f(
        [], "Iterations at which the evaluated network is written as a snapshot (snapshots/it<N>.pt; evaluate "
            "scores them). Never read back by adapt: the budget stays source-free.", empty_ok=True)

    def __post_init__(self) -> None:
        check_snapshots("adapt", self.snapshots, self.iterations)


@dataclass(frozen=True)
class EvaluateParams:
    scales: list[float] = _f([1.0], "Test scales relative to the input size (MST when more than one).",
                             min=0.1, max=4.0)
    flip: bool = _f(False, "Average with the horizontally flipped input.")
    batch_size: int = _f(1, "Evaluation batch size (images per forward; with flip, originals and mirrors share it).", min=1)
    save_predictions: bool = _f(False, "Also write trainId and colourised prediction PNGs.")
    maps: int = _f(3, "Target val images (first N by name) whose prediction, confidence and reliability maps are "
                   "written to maps/: the report's qualitative panel (0 = no panel).", min=0, max=50)
    silhouette_pixels: int = _f(
        20000, "Table VII: stride-8 val pixels the silhouette is computed on (all when fewer; else a uniform "
        "sample of this many).", min=2)


@dataclass(frozen=True)
class ReportParams:
    tile_width: int = _f(256, "Width in pixels of each panel tile (images are resized to it).", min=32, max=2048)


@dataclass(frozen=True)
class DataRole:
    dataset: Literal["gta5", "synthia", "cityscapes", "nthu", "folder"] = _f(
        "gta5", "Raw format of this role's dataset (folder = every PNG/JPEG under root, e.g. your own frames).")
    root: str = _f("data/raw/gta5", "Raw dataset root, exactly as distributed (under data/raw/<name>).")
    city: str = _f("", "NTHU Cross-City city (Rome, Rio, Tokyo, Taipei); empty otherwise.")
    labels: str = _f("", "folder only: optional label PNGs, same relative paths as the images (-> val split).")
    label_encoding: Literal["cityscapes", "trainids"] = _f(
        "cityscapes", "folder only: what the label PNGs hold, Cityscapes ids (0-33) or trainIds (0-18, 255).")


@dataclass(frozen=True)
class DataParams:
    source: DataRole = field(default_factory=DataRole)
    target: DataRole = field(default_factory=lambda: DataRole("cityscapes", "data/raw/cityscapes"))


@dataclass(frozen=True)
class Params:
    common: CommonParams = field(default_factory=CommonParams)
    data: DataParams = field(default_factory=DataParams)
    synth: SynthParams = field(default_factory=SynthParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    train_source: TrainSourceParams = field(default_factory=TrainSourceParams)
    adapt: AdaptParams = field(default_factory=AdaptParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    report: ReportParams = field(default_factory=ReportParams)
    variants: list[str] = field(default_factory=lambda: ["ST_MT", "STvM"])
    seeds: list[int] = field(default_factory=lambda: [0])
    source_seed: int = 0


def _check_value(key: str, tp: Any, value: Any, meta: Any) -> Any:
    """Validate one value against its annotation; return it (ints are accepted for floats)."""
    origin = get_origin(tp)
    if origin is Literal:
        if not isinstance(value, (str, int, float)) or value not in get_args(tp) or (
                isinstance(value, bool) != isinstance(get_args(tp)[0], bool)):
            raise StvmError(None, f"{key}: expected one of {list(get_args(tp))}, got {show(value)}")
        return value
    if origin is list:
        (inner,) = get_args(tp)
        if not isinstance(value, list) or not (value or meta.get("empty_ok")):
            raise StvmError(None, f"{key}: expected a non-empty list, got {show(value)}")
        return [_check_value(f"{key}[{i}]", inner, v, meta) for i, v in enumerate(value)]  # the range is per item
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise StvmError(None, f"{key}: expected {getattr(tp, '__name__', tp)}, got {show(value)}")
    if tp is float and not math.isfinite(value):
        raise StvmError(None, f"{key}: expected a finite number, got {value!r}")
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise StvmError(None, f"{key}: expected a value in {rng}, got {show(value)}")
    return value


check_value = _check_value  # the one type and range check: params files here, command-line numbers in cli_parser


def _build_section(cls: type, name: str, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise StvmError(None, f"{name}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k)[:40] for k in set(raw) - set(fields))
    if unknown:
        raise StvmError(None, f"{name}.{unknown[0]}: unknown key (known: {', '.join(fields)})")
    values = {
        k: _build_section(hints[k], f"{name}.{k}", v) if dataclasses.is_dataclass(hints[k])
        else _check_value(f"{name}.{k}", hints[k], v, fields[k].metadata)
        for k, v in raw.items()
    }
    return cls(**values)


def params_from_dict(raw: Any) -> Params:
    """Validate a parsed params mapping into ``Params`` (errors name the dotted key)."""
    if not isinstance(raw, dict):
        raise StvmError(None, "expected a mapping at the top level")
    hints = typing.get_type_hints(Params)
    known = {f.name for f in dataclasses.fields(Params)}
    unknown = sorted(str(k)[:40] for k in set(raw) - known)
    if unknown:
        raise StvmError(None, f"{unknown[0]}: unknown section (known: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    for name in known & set(raw):
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            out[name] = _build_section(tp, name, raw[name])
        else:
            seed_range = {"min": 0, "max": SEED_MAX} if name == "source_seed" else {}  # seeds: check_seed
            out[name] = _check_value(name, tp, raw[name], seed_range)
    for v in out.get("variants", []):
        if v not in VARIANTS:
            raise StvmError(None, f"variants: unknown variant {show(v)} (known: {', '.join(VARIANTS)})")
        if not VARIANTS[v].trains:  # seed-independent: the DAG runs it once, as the Source model
            raise StvmError(None, f"variants: {v} is the reference run, made once by its own stage; list only "
                                  "the self-trained variants")
    for i, seed in enumerate(out.get("seeds", [])):
        check_seed(seed, f"seeds[{i}]")
    return Params(**out)


def check_seed(seed: int, key: str) -> int:
    """A seed must be an integer in [0, 2**32 - 1] (what every RNG stvm seeds accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise StvmError(None, f"{key}: expected an integer seed in [0, {SEED_MAX}], got {show(seed)}")
    return seed


def load_params(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read and validate a params file once (merged over its ``_base_``, ``stvm/params_file.py``), with
    ``--set section.key=value`` overrides applied before the validation (so they are checked like the
    file); every error names the file and key. ``path`` None: the built-in defaults (the dataclasses'
    own, the paper's), overrides applied alike."""
    raw = params_mapping(path, overrides)
    try:
        return params_from_dict(raw)
    except StvmError as err:
        origin = "the built-in defaults" if path is None else path
        where = f"{origin} with --set {' --set '.join(overrides)}" if overrides else origin
        raise StvmError(where, err.problem) from None


def params_mapping(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The mapping ``load_params`` validates: the file merged over its ``_base_`` ({} for None), the
    overrides applied (``stvm params --out`` writes it)."""
    raw = {} if path is None else read_params_file(path)
    for item in overrides:
        raw = apply_override(raw, item)
    return raw


def section_dict(section: Any) -> dict[str, Any]:
    """A section as a plain dict (written next to every output for provenance)."""
    return dataclasses.asdict(section)


def params_table() -> str:
    """Markdown table of every parameter, its default and its help text (docs/PARAMS.md)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Params):
        tp = typing.get_type_hints(Params)[f.name]
        if not dataclasses.is_dataclass(tp) or f.name == "data":
            continue
        for sf in dataclasses.fields(tp):
            default = sf.default if sf.default is not dataclasses.MISSING else sf.default_factory()
            if dataclasses.is_dataclass(default):  # a nested section (synth.parts): one row per key
                for nf in dataclasses.fields(default):
                    rows.append(f"| `{f.name}.{sf.name}.{nf.name}` | `{getattr(default, nf.name)}` | "
                                f"{nf.metadata.get('help', '')} |")
                continue
            rows.append(f"| `{f.name}.{sf.name}` | `{default}` | {sf.metadata.get('help', '')} |")
    return "\n".join(rows)

