"""Which stage calls each phase of `stvm synth_benchmark` makes, and where each writes.

Why one command and not the DVC DAG: the benchmark is a measurement of the method, with products
the pipeline does not make: a geometry table, a shift chosen by a rule, an Oracle trained on
*target* labels (the ceiling no source-free method may use), learning curves and Table IV. Each
step is one ``python -m stvm <stage> ... --set key=value`` call writing its own folder atomically;
a step whose output exists is skipped, so an interrupted run resumes. The phases, in order:

1. ``geometry``: each choice of the head geometry alone (the paper's dilations or dilations scaled
   to the feature map; half- or full-height crops) on the source model and AdaBN only.
2. ``shift``: the shift strength, bisected until Source keeps 45-65 % of the Oracle and AdaBN
   closes at most 25 % of the gap; measured on Source, AdaBN and Oracle only, frozen in
   ``shift/frozen.json`` before any self-trained variant runs.
3. ``curves``: mIoU against iterations for the self-trained variants, well past the old budget.
4. ``table``: Table IV at one budget (``--budget``) fixed from the curves for every variant.

The calibrated preset's phases read the params as they stand (their shift, geometry and budget):
``calibrate`` (the source model on held-out source frames and on the target) and ``ablation``
(calibrate's steps, then Source, AdaBN and every variant at every seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stvm.config import Params
from stvm.errors import StvmError
from stvm.models.deeplab import feature_side, scaled_dilations
from stvm.variants import VARIANTS

PHASES = ("geometry", "shift", "curves", "table")  # preset paper_geometry (--phase all)
CALIBRATED_PHASES = ("calibrate", "ablation")  # preset calibrated: the params' own shift, geometry and budget
RATIO_RANGE = (0.45, 0.65)  # Source on the target as a share of the Oracle (GTA5 -> Cityscapes: about 0.55)
ADABN_SHARE_MAX = 0.25  # AdaBN closes at most this share of the Source -> Oracle gap
SOURCE_MIOU_MIN, CLASS_IOU_MIN = 50.0, 10.0  # a source model that knows every class
FIRST_SHIFT, MAX_PROBES = 0.5, 6  # bisection of synth.shift in (0, 1]
CURVE_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.mean_teacher)  # the mean-teacher variants
CURVE_LENGTH, CURVE_POINTS = 4, 8  # curves run 4x adapt.iterations (500 -> 2000), with 8 points
# the paper's IV-B learning rates, for one STvM curve beside the benchmark's 10x ones
PAPER_LR = ("adapt.lr=2.5e-4", "adapt.lr_head=2.5e-3", "adapt.lr_metric=3.0e-4")


@dataclass(frozen=True)
class Step:
    """One stage call: ``argv`` after ``python -m stvm``; skipped when ``done`` exists."""

    group: str  # where the time goes
    name: str
    argv: tuple[str, ...]
    done: Path


def _sets(overrides: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a for o in overrides for a in ("--set", o))


def evaluate(group: str, name: str, model: Path, prepared: Path, split: str, out: Path) -> Step:
    return Step(group, name, ("evaluate", "--model", str(model), "--images", str(prepared / split / "images"),
                              "--labels", str(prepared / split / "labels"), "--out", str(out)), out / "metrics.json")


def adapt(group: str, variant: str, seed: int, source: Path, target: Path, root: Path, label: str = "",
          overrides: tuple[str, ...] = (), run: str | None = None) -> list[Step]:
    """Adapt ``variant`` (stored as ``run``) from ``source`` on ``target``'s train images, then evaluate it."""
    run = run or variant
    model = root / "models" / run / f"seed{seed}"
    return [Step(group, f"adapt {run} seed {seed}{label}",
                 ("adapt", "--variant", variant, "--seed", str(seed), "--source-model", str(source),
                  "--target-images", str(target / "train/images"), "--out", str(model), *_sets(overrides)),
                 model / "model.pt"),
            evaluate(group, f"evaluate {run} seed {seed}{label}", model / "model.pt", target, "val",
                     root / "eval" / run / f"seed{seed}")]


def train(group: str, name: str, images: Path, out: Path, seed: int, overrides: tuple[str, ...] = ()) -> Step:
    """Supervised training on a prepared split (the source model, or the Oracle on target labels)."""
    return Step(group, name, ("train_source", "--seed", str(seed), "--images", str(images / "images"),
                              "--labels", str(images / "labels"), "--out", str(out), *_sets(overrides)),
                out / "model.pt")


# --- the layout ------------------------------------------------------------------------------------


def shift_dir(out: Path, shift: float) -> Path:
    return out / "shift" / f"s{shift:.4f}"


def source_prepared(out: Path) -> Path:
    return out / "source" / "prepared"


def scaled(p: Params) -> list[int]:
    """The head dilations at the paper's ratio of dilation to feature-map side, at this frame height."""
    return list(scaled_dilations(p.train_source.arch, feature_side(p.train_source.arch, p.prepare.height)))


def chosen_option(p: Params) -> str:
    """The geometry option the params hold, both at full-height crops: ``crop`` (the paper's dilations)
    or ``both`` (dilations scaled to the map); ``check_geometry`` allows no other."""
    return "crop" if not p.train_source.head_dilations else "both"


def source_model(out: Path, p: Params) -> Path:
    """The benchmark's source model: the geometry phase's model of the option the params hold."""
    return out / "geometry" / chosen_option(p) / "models" / "Source" / f"seed{p.source_seed}" / "model.pt"


def geometry_options(p: Params) -> dict[str, tuple[str, ...]]:
    """Each geometry choice alone, as overrides of the params: the paper's or scaled dilations, half- or
    full-height crops (the params hold one of the two full-height options: ``chosen_option``)."""
    paper, scale = "train_source.head_dilations=[]", f"train_source.head_dilations={scaled(p)}"
    half, full = f"train_source.crop={p.prepare.height // 2}", f"train_source.crop={p.prepare.height}"
    return {"old": (paper, half), "dilations": (scale, half), "crop": (paper, full), "both": (scale, full)}


def check_geometry(p: Params) -> None:
    """The params must hold the paper's crop rule at this size (full-height crops) and one of the two
    dilation choices the geometry phase measures (the paper's, or scaled to the map's side)."""
    want = scaled(p)
    dil = list(p.train_source.head_dilations)
    problems = [f"train_source.head_dilations {dil} is neither [] (the paper's) nor {want} (the paper's ratio at "
                f"this map side)"] * (dil not in ([], want))
    problems += [f"{s}.crop {c} != prepare.height {p.prepare.height}" for s, c in
                 (("train_source", p.train_source.crop), ("adapt", p.adapt.crop)) if c != p.prepare.height]
    if problems:
        raise StvmError(None, "benchmark params do not follow the paper's geometry: " + "; ".join(problems)
                        + f" (phases {', '.join(PHASES)} need it; --phase {' or '.join(CALIBRATED_PHASES)} do not)")


# --- the phases as steps ---------------------------------------------------------------------------


def data_steps(out: Path, shift: float, with_source: bool) -> list[Step]:
    """Synthesise one world at ``shift`` and prepare its target (and, once, the source)."""
    root = shift_dir(out, shift)
    raw = root / "raw"
    small = () if with_source else ("synth.n_source=1",)  # the source domain does not depend on the shift
    steps = [Step("data", f"synth shift {shift:g}", ("synth", "--out", str(raw), *_sets((f"synth.shift={shift}", *small))),
                  raw / "synth.json"),
             Step("data", f"prepare target shift {shift:g}", ("prepare", "--dataset", "cityscapes", "--root",
                  str(raw / "target"), "--out", str(root / "prepared/target")), root / "prepared/target/manifest.json")]
    if with_source:
        steps.append(Step("data", "prepare source", ("prepare", "--dataset", "gta5", "--root", str(raw / "source"),
                                                     "--out", str(source_prepared(out))),
                          source_prepared(out) / "manifest.json"))
    return steps


def geometry_steps(p: Params, out: Path) -> list[Step]:
    """Phase geometry: the data at the first shift probe, then per option a source model and AdaBN."""
    s, target = p.source_seed, shift_dir(out, FIRST_SHIFT) / "prepared/target"
    steps = data_steps(out, FIRST_SHIFT, with_source=True)
    for name, overrides in geometry_options(p).items():
        root = out / "geometry" / name
        model = root / "models/Source" / f"seed{s}"
        steps += [train("geometry", f"train source ({name})", source_prepared(out) / "train", model, s, overrides),
                  evaluate("geometry", f"source val ({name})", model / "model.pt", source_prepared(out), "val",
                           root / "source_val/Source" / f"seed{s}"),
                  evaluate("geometry", f"target val ({name})", model / "model.pt", target, "val",
                           root / "eval/Source" / f"seed{s}"),
                  *adapt("geometry", "AdaBN", s, model / "model.pt", target, root, f" ({name})")]
    return steps


def probe_steps(p: Params, out: Path, shift: float) -> list[Step]:
    """One shift probe: the source model and AdaBN on its target, and an Oracle trained on its labels."""
    s, root = p.source_seed, shift_dir(out, shift)
    steps = [] if shift == FIRST_SHIFT else data_steps(out, shift, with_source=False)
    target = root / "prepared/target"
    oracle = root / "models/Oracle" / f"seed{s}"
    return steps + [
        evaluate("shift", f"source on shift {shift:g}", source_model(out, p), target, "val", root / "eval/Source" / f"seed{s}"),
        *adapt("shift", "AdaBN", s, source_model(out, p), target, root, f" (shift {shift:g})"),
        train("shift", f"oracle on shift {shift:g}", target / "train", oracle, s),
        evaluate("shift", f"oracle on shift {shift:g}", oracle / "model.pt", target, "val", root / "eval/Oracle" / f"seed{s}"),
    ]


def curve_steps(p: Params, out: Path, shift: float) -> list[Step]:
    """Phase curves: seed 0 of each self-trained variant to ``CURVE_LENGTH`` times the params' budget,
    with snapshots at ``CURVE_POINTS`` even steps (the STvM curve also at the paper's learning rates)."""
    target, root = shift_dir(out, shift) / "prepared/target", out / "curves"
    total = CURVE_LENGTH * p.adapt.iterations
    every = max(1, total // CURVE_POINTS)
    budget = (f"adapt.iterations={total}", f"adapt.snapshots={list(range(every, total, every))}")
    steps = [st for v in CURVE_VARIANTS for st in adapt("curves", v, 0, source_model(out, p), target, root, "", budget)]
    steps += adapt("curves", "STvM", 0, source_model(out, p), target, root, " (paper lr)", budget + PAPER_LR,
                   run="STvM_paper_lr")
    return steps + levels(p, out, shift, root)


def levels(p: Params, out: Path, shift: float, root: Path) -> list[Step]:
    """Source, AdaBN and Oracle evaluated into ``root/eval`` (the horizontal lines and table rows)."""
    s, probe = p.source_seed, shift_dir(out, shift)
    target = probe / "prepared/target"
    return [evaluate("levels", f"Source into {root.name}", source_model(out, p), target, "val", root / "eval/Source" / f"seed{s}"),
            evaluate("levels", f"AdaBN into {root.name}", probe / "models/AdaBN" / f"seed{s}" / "model.pt", target, "val",
                     root / "eval/AdaBN" / f"seed{s}"),
            evaluate("levels", f"Oracle into {root.name}", probe / "models/Oracle" / f"seed{s}" / "model.pt", target, "val",
                     root / "eval/Oracle" / f"seed{s}")]


def table_steps(p: Params, out: Path, shift: float, budget: int) -> list[Step]:
    """Phase table: every self-trained variant and seed at ``budget`` iterations, and the three levels."""
    target, root = shift_dir(out, shift) / "prepared/target", out / "table"
    trained = p.variants  # self-trained only (AdaBN, the reference, is refused there)
    steps = [st for v in trained for seed in p.seeds
             for st in adapt("table", v, seed, source_model(out, p), target, root, "", (f"adapt.iterations={budget}",))]
    return steps + levels(p, out, shift, root)


def calibrated_source(out: Path, p: Params) -> Path:
    """The calibrated preset's source model: trained with the params as they stand."""
    return out / "calibrate" / "models" / "Source" / f"seed{p.source_seed}" / "model.pt"


def calibrate_steps(p: Params, out: Path) -> list[Step]:
    """Phase calibrate: the data at the params' own shift, the source model, scored on held-out source
    frames and on the target val set (their difference is the domain gap)."""
    s, shift, root = p.source_seed, p.synth.shift, out / "calibrate"
    model = calibrated_source(out, p)
    return data_steps(out, shift, with_source=True) + [
        train("calibrate", "train source", source_prepared(out) / "train", model.parent, s),
        evaluate("calibrate", "source val", model, source_prepared(out), "val", root / "source_val/Source" / f"seed{s}"),
        evaluate("calibrate", "target val", model, shift_dir(out, shift) / "prepared/target", "val",
                 root / "eval/Source" / f"seed{s}")]


def ablation_steps(p: Params, out: Path) -> list[Step]:
    """Phase ablation: calibrate's steps (skipped once done), then Source and AdaBN (which no seed
    changes) and every variant of the params at every seed, at adapt.iterations."""
    s, root = p.source_seed, out / "ablation"
    target, model = shift_dir(out, p.synth.shift) / "prepared/target", calibrated_source(out, p)
    steps = calibrate_steps(p, out) + [
        evaluate("ablation", "Source", model, target, "val", root / "eval/Source" / f"seed{s}"),
        *adapt("ablation", "AdaBN", s, model, target, root)]
    return steps + [st for v in p.variants for seed in p.seeds for st in adapt("ablation", v, seed, model, target, root)]
