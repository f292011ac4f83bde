"""``stvm <stage>``: one subcommand per pipeline stage, plus ``score`` and ``bench``.

Each handler parses paths from the command line and hyper-parameters from ``--params``
(validated once by ``stvm.config``), then calls one library function. A ``StvmError`` and an
``OSError`` (missing, unreadable or unwritable path, full disk) become a single line on stderr
naming the path, and exit status 2; SIGTERM is turned into an orderly exit (status 143) so
temporary outputs are removed as on Ctrl-C. Nothing else is caught, so real bugs keep their
traceback. Heavy imports (torch) happen inside the handlers so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from stvm.errors import StvmError
from stvm.variants import VARIANTS

DEFAULT_PARAMS = Path("params.yaml")


def _params(args: argparse.Namespace):
    from stvm.config import check_seed, load_params
    from stvm.threads import apply_threads

    params = load_params(args.params)
    apply_threads(params.common.threads)
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed, "--seed")
    return params


def _size(text: str) -> tuple[int, int]:
    """``WxH`` -> (W, H) for ``--input-size``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1024x512, got {text[:40]!r}") from None
    return w, h


def cmd_synth(args: argparse.Namespace) -> int:
    import dataclasses

    from stvm.data.synth import save_preview, write_synth

    cfg = _params(args).synth
    parts = dataclasses.asdict(cfg.parts)
    if args.only_part is not None:  # one part alone (the benchmark's shift-decomposition table)
        parts = {name: (value if name == args.only_part else 0.0) for name, value in parts.items()}
    summary = write_synth(
        args.out, n_source=cfg.n_source, n_target_train=cfg.n_target_train, n_target_val=cfg.n_target_val,
        width=cfg.width, height=cfg.height, seed=cfg.seed if args.seed is None else args.seed, shift=cfg.shift,
        workers=cfg.workers, parts=parts, object_size=cfg.object_size,
    )
    if args.preview:
        save_preview(args.out, args.preview)
    print(json.dumps({k: summary[k] for k in summary if k in ("counts", "seed")}))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from stvm.data.prepare import prepare_dataset

    p = _params(args)
    cfg = p.prepare
    holdout = cfg.source_holdout if args.holdout is None else args.holdout
    role = getattr(p.data, args.role) if args.role else None
    labels = args.labels or (role.labels if role else "")
    encoding = args.label_encoding or (role.label_encoding if role else "cityscapes")
    manifest = prepare_dataset(
        args.dataset, args.root, args.out, size=(cfg.width, cfg.height), eval_label_size=cfg.eval_label_size,
        holdout=holdout if args.dataset in ("gta5", "synthia") else 0, city=args.city or None, mismatch=cfg.mismatch,
        labels=Path(labels) if labels else None, label_encoding=encoding,
        workers=cfg.workers if args.workers is None else args.workers, overwrite=args.overwrite,
        show_progress=not args.quiet,
    )
    counts = {s: v["count"] for s, v in manifest["splits"].items()}
    print(json.dumps({"dataset": args.dataset, "out": str(args.out), "counts": counts}))
    return 0


def cmd_train_source(args: argparse.Namespace) -> int:
    from stvm.train import train_source

    p = _params(args)
    result = train_source(
        p.train_source, images=args.images, labels=args.labels, out=args.out, protocol=p.common.protocol,
        seed=p.common.seed if args.seed is None else args.seed, device=p.common.device,
        num_workers=p.common.num_workers, stop_after=args.stop_after, show_progress=not args.quiet,
    )
    print(json.dumps(result))
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from stvm.adapt.loop import adapt

    p = _params(args)
    result = adapt(
        p.adapt, variant=args.variant, source_model=args.source_model, target_images=args.target_images,
        out=args.out, seed=p.common.seed if args.seed is None else args.seed, device=p.common.device,
        num_workers=p.common.num_workers, stop_after=args.stop_after, show_progress=not args.quiet,
    )
    print(json.dumps(result))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stvm.evaluate.stage import evaluate_stage

    p = _params(args)
    metrics = evaluate_stage(
        p.evaluate, model_path=args.model, images=args.images, labels=args.labels, out=args.out,
        device=p.common.device, input_size=args.input_size, show_progress=not args.quiet,
    )
    print(json.dumps({k: metrics[k] for k in ("miou", "miou13") if k in metrics}))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from stvm.config import Params
    from stvm.evaluate.predict import predict_folder

    p = _params(args) if args.params is not None else Params()
    summary = predict_folder(
        args.model, args.images, args.out, scales=args.scales or p.evaluate.scales,
        flip=p.evaluate.flip if args.flip is None else args.flip, batch_size=args.batch_size or p.evaluate.batch_size,
        maps=args.maps, device=args.device or p.common.device, overwrite=args.overwrite, show_progress=not args.quiet,
    )
    print(json.dumps({k: summary[k] for k in ("images", "predicted", "skipped", "wall_seconds")}))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from stvm.export import export_model

    info = export_model(args.model, args.out, fmt=args.format, opset=args.opset)
    print(json.dumps({"out": str(args.out), "format": info["format"], "max_abs_diff": info["check"]["max_abs_diff"],
                      "sidecar": f"{args.out}.json"}))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from stvm.evaluate.score import score_folders

    print(json.dumps(score_folders(args.pred, args.gt, args.protocol), indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.stage == "threads":
        from stvm.bench_threads import run_threads_bench

        run_threads_bench(args.jobs, args.threads, args.iters, args.arch, args.crop, args.batch)
        return 0
    from stvm.config import MAX_SIDE

    for name, lo, hi in (("width", 8, MAX_SIDE), ("height", 8, MAX_SIDE), ("batch", 1, 4096), ("iters", 1, 10**6)):
        if not lo <= getattr(args, name) <= hi:
            raise StvmError(None, f"--{name}: expected a value in [{lo}, {hi}], got {getattr(args, name)}")
    if args.stage == "adapt":
        from stvm.bench_adapt import run_adapt_bench as run
    else:
        from stvm.bench import run_bench as run
    run(arch=args.arch, width=args.width, height=args.height, batch=args.batch, iters=args.iters, device=args.device)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from stvm.report.tables import ablation_markdown, ablation_rows, collect, write_summary

    rows = ablation_rows(collect(args.eval, args.metric))
    if args.out is not None:
        write_summary(rows, args.out, args.metric)
    print(ablation_markdown(rows))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from stvm.report.compare import compare_markdown, experiments, load_exp_show

    print(compare_markdown(experiments(load_exp_show(args.saved, args.all_commits))))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from stvm.benchmark import check_params, plan, run, timing_table, write_tables

    p = _params(args)
    check_params(args.params, args.out)
    phases = ["properties", "table"] if args.phase == "all" else [args.phase]
    spent: dict[str, float] = {}
    for phase in phases:
        for group, seconds in run(plan(p, args.out, phase), args.params, args.quiet).items():
            spent[group] = spent.get(group, 0.0) + seconds
        ok = write_tables(args.out, p.source_seed, phase)
        if phase == "properties" and not ok:
            print(timing_table(spent, args.out))
            print(f"stvm benchmark: {args.out}: the benchmark's properties do not hold (FAIL above); "
                  "no adaptation variant was run", file=sys.stderr)
            return 1
    print("\n## where the time goes\n\n" + timing_table(spent, args.out))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from stvm.report.stage import report_stage

    p = _params(args)
    summary = report_stage(
        p.report, eval_root=args.eval, models_root=args.models, prepared_root=args.prepared, synth=args.synth,
        params_path=args.params, out=args.out, device=p.common.device,
    )
    print(json.dumps({k: summary[k] for k in ("out", "runs", "seeds")}))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from stvm.data.labels import PROTOCOL_CLASSES
    from stvm.models.sources import import_stvm, import_torchvision_deeplabv3
    from stvm.models.weights import import_external_deeplabv2, save_model_checkpoint

    protocol = args.protocol or 19
    meta = {"protocol": protocol, "stage": "import", "init": f"imported from {args.pth} ({args.source})"}
    if args.source == "stvm":
        model, old = import_stvm(args.pth)
        by_count = {len(v): k for k, v in PROTOCOL_CLASSES.items()}
        protocol = args.protocol or old.get("protocol") or by_count.get(model.num_classes)
        if protocol not in PROTOCOL_CLASSES or len(PROTOCOL_CLASSES[protocol]) != model.num_classes:
            raise StvmError(args.pth, f"{model.num_classes} classes do not fit protocol {protocol}")
        meta = {**old, **meta, "protocol": protocol}
    elif args.source == "torchvision-deeplabv3":
        model = import_torchvision_deeplabv3(args.pth, len(PROTOCOL_CLASSES[protocol]), replace_head=args.replace_head)
    else:
        model = import_external_deeplabv2(args.pth, len(PROTOCOL_CLASSES[protocol]), aspp_branches=args.aspp_branches)
    save_model_checkpoint(model, args.out, **meta)
    print(json.dumps({"out": str(args.out), "arch": model.arch, "num_classes": model.num_classes}))
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from stvm.config import params_table

    _params(args)  # validate
    print(params_table())
    return 0


def cmd_deps(args: argparse.Namespace) -> int:
    from stvm.deps import stage_code, sync

    if args.write or args.check:
        stale = sync(Path.cwd(), write=args.write)
        for path in stale:
            print(f"{path}: code dependencies {'rewritten' if args.write else 'out of date'}", file=sys.stderr)
        return 1 if stale and args.check else 0
    for command in args.command_names:
        print("\n".join(stage_code(command)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    from stvm.config import SHIFT_PART_NAMES

    ap = argparse.ArgumentParser(prog="stvm", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="STAGE")

    def stage(name: str, help: str, fn) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: params.yaml)")
        sp.add_argument("--quiet", action="store_true", help="no progress output")
        sp.set_defaults(fn=fn)
        return sp

    sp = stage("benchmark", "The synthetic benchmark tier: source model, shift parts, Oracle, then Table IV "
               "(resumable; README 'Benchmark').", cmd_benchmark)
    sp.add_argument("--out", type=Path, default=Path("results/benchmark"), help="output folder (default: results/benchmark)")
    sp.add_argument("--phase", choices=["all", "properties", "table"], default="all",
                    help="properties: what the benchmark is (frozen before variants run); table: Table IV on it")

    sp = stage("synth", "Write the built-in synthetic benchmark (GTA5-format source, Cityscapes-format target).", cmd_synth)
    sp.add_argument("--out", type=Path, required=True, help="output root (writes OUT/source and OUT/target)")
    sp.add_argument("--seed", type=int, help="override synth.seed")
    sp.add_argument("--only-part", choices=[*SHIFT_PART_NAMES, "none"],
                    help="keep only this part of the shift (at its synth.parts strength), the others off; "
                         "none = every part off (both domains drawn alike)")
    sp.add_argument("--preview", type=Path, help="also write a PNG preview of both domains")

    sp = stage("prepare", "Read a raw dataset, remap labels to trainIds, resize, write a prepared dataset.", cmd_prepare)
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
    sp.add_argument("--holdout", type=int, help="override prepare.source_holdout (gta5/synthia only)")
    sp.add_argument("--workers", type=int, help="override prepare.workers")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing output")

    sp = stage("train_source", "Supervised training of the source model on a prepared labelled split.", cmd_train_source)
    sp.add_argument("--images", type=Path, required=True)
    sp.add_argument("--labels", type=Path, required=True)
    sp.add_argument("--out", type=Path, required=True, help="run folder: model.pt, ckpt/, plots/")
    sp.add_argument("--seed", type=int, help="override common.seed")
    sp.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)

    sp = stage("adapt", "STvM source-free adaptation (or an ablation variant) on unlabeled target images.", cmd_adapt)
    sp.add_argument("--variant", required=True, choices=list(VARIANTS))
    sp.add_argument("--source-model", type=Path, required=True, help="source model.pt (stvm format)")
    sp.add_argument("--target-images", type=Path, required=True, help="prepared target train images (no labels)")
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--seed", type=int, help="override common.seed")
    sp.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)

    sp = stage("evaluate", "mIoU (per protocol, single- or multi-scale) of a model on prepared target val.", cmd_evaluate)
    sp.add_argument("--model", type=Path, required=True)
    sp.add_argument("--images", type=Path, required=True)
    sp.add_argument("--labels", type=Path, required=True)
    sp.add_argument("--out", type=Path, required=True, help="folder: metrics.json (+ predictions)")
    sp.add_argument("--input-size", type=_size, metavar="WxH",
                    help="resize the images to WxH (default: the prepared images' own size, which must be "
                         "the size the model was trained at); a stated override, recorded in metrics.json")

    sp = sub.add_parser("predict", help="Segment every PNG/JPEG under a folder at its own size (trainId, colour and "
                        "overlay PNGs; resumable).")
    sp.add_argument("--model", type=Path, required=True, help="stvm model.pt (source, adapted or imported)")
    sp.add_argument("--images", type=Path, required=True, help="folder of images (nested folders are read too)")
    sp.add_argument("--out", type=Path, required=True, help="folder: pred/, color/, overlay/ (+ maps), predict.json")
    sp.add_argument("--params", type=Path, help="params file for evaluate.scales/flip/batch_size and common.device "
                    "(default: built-in defaults)")
    sp.add_argument("--scales", type=float, nargs="+", help="MST scales (override evaluate.scales)")
    sp.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="average with the flipped input")
    sp.add_argument("--batch-size", type=int, help="images per batch (equal sizes only; override evaluate.batch_size)")
    sp.add_argument("--maps", action="store_true", help="also write the teacher's confidence and, when the checkpoint "
                    "carries M, the reliability map")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override common.device")
    sp.add_argument("--overwrite", action="store_true", help="replace predictions made with another model/settings")
    sp.add_argument("--quiet", action="store_true", help="no progress output")
    sp.set_defaults(fn=cmd_predict)

    sp = sub.add_parser("export", help="Export a model to TorchScript or ONNX, checked against PyTorch's logits, with "
                        "its preprocessing in FILE.json.")
    sp.add_argument("--model", type=Path, required=True, help="stvm model.pt")
    sp.add_argument("--out", type=Path, required=True, help="FILE.onnx (ONNX) or FILE.pt/.ts (TorchScript)")
    sp.add_argument("--format", choices=["onnx", "torchscript"], help="override the format the suffix implies")
    sp.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    sp.set_defaults(fn=cmd_export)

    sp = sub.add_parser("score", help="Score a folder of trainId prediction PNGs against labels (JSON on stdout).")
    sp.add_argument("--pred", type=Path, required=True)
    sp.add_argument("--gt", type=Path, required=True)
    sp.add_argument("--protocol", type=int, choices=[19, 16, 13], default=19)
    sp.set_defaults(fn=cmd_score)

    sp = sub.add_parser("bench", help="Throughput, peak memory and loop overhead (a benchmark, not a test).")
    sp.add_argument("--stage", choices=["train", "adapt", "threads"], default="train",
                    help="threads: concurrent jobs with and without thread control")
    sp.add_argument("--arch", default="deeplabv2_r18")
    sp.add_argument("--width", type=int, default=256)
    sp.add_argument("--height", type=int, default=128)
    sp.add_argument("--batch", type=int, default=2)
    sp.add_argument("--iters", type=int, default=10)
    sp.add_argument("--device", default="auto")
    sp.add_argument("--jobs", type=int, default=2, help="--stage threads: concurrent processes")
    sp.add_argument("--threads", type=int, default=1, help="--stage threads: threads per process when controlled")
    sp.add_argument("--crop", type=int, default=64, help="--stage threads: crop size (the demo's)")
    sp.set_defaults(fn=cmd_bench)

    sp = sub.add_parser("summary", help="Table IV-style ablation (mean ± std, min over seeds) from metrics files.")
    sp.add_argument("--eval", type=Path, default=Path("results/eval"), help="folder of <run>/seed<k>/metrics.json")
    sp.add_argument("--metric", default="miou", help="metric key (e.g. miou, miou13)")
    sp.add_argument("--out", type=Path, help="also write OUT/<run>.json (mean, std, min, seeds; a DVC metrics folder)")
    sp.set_defaults(fn=cmd_summary)

    sp = sub.add_parser("compare", help="DVC experiments side by side: differing params, per-run mean ± std (min) "
                        "mIoU (`dvc exp show` without the dependency-hash columns).")
    sp.add_argument("--from", dest="saved", type=Path, help="read saved `dvc exp show --json` output instead of running dvc")
    sp.add_argument("-A", "--all-commits", action="store_true", help="experiments of all commits (dvc exp show -A)")
    sp.set_defaults(fn=cmd_compare)

    sp = stage("report", "Report of a pipeline run: paper-style tables, curves, panels, provenance (md, html, CSV).",
               cmd_report)
    sp.add_argument("--eval", type=Path, default=Path("results/eval"), help="folder of <run>/seed<k>/metrics.json")
    sp.add_argument("--models", type=Path, default=Path("results/models"),
                    help="folder of <run>/seed<k>/ (metrics, plots, model.pt)")
    sp.add_argument("--prepared", type=Path, default=Path("data/prepared"),
                    help="prepared datasets (<role>/manifest.json, target/val)")
    sp.add_argument("--synth", type=Path, help="synthetic benchmark summary (data/raw/synth/synth.json), if used")
    sp.add_argument("--out", type=Path, default=Path("results/report"), help="report folder (replaced as a whole)")

    sp = sub.add_parser("import", help="Import a source model trained elsewhere: AdaptSegNet/ADVENT DeepLabV2 .pth, "
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
                    help="class protocol (default 19; stvm files keep theirs)")
    sp.add_argument("--aspp-branches", type=int, choices=[1, 2, 3, 4], help="2 for AdaptSegNet checkpoints (see README)")
    sp.set_defaults(fn=cmd_import)

    sp = stage("params", "Validate params.yaml and print the parameter table.", cmd_params)

    sp = sub.add_parser("deps", help="Code files each stage command imports (the DAG files' code dependencies).")
    sp.add_argument("command_names", nargs="*", metavar="COMMAND", help="stage command(s), e.g. adapt")
    sp.add_argument("--write", action="store_true", help="rewrite dvc.yaml and workflow/rules/*.smk code entries")
    sp.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml or a rules file is out of date")
    sp.set_defaults(fn=cmd_deps)
    return ap


class Terminated(BaseException):
    """Raised by the SIGTERM handler: unwinds like Ctrl-C, so temporaries are removed."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def os_error_line(err: OSError) -> str:
    """One line for an OS error: the path(s) it names and the system's description of the problem."""
    problem = err.strerror or type(err).__name__
    where = [str(f) for f in (err.filename, err.filename2) if f is not None]
    return f"{' -> '.join(where)}: {problem}" if where else f"{problem} (errno {err.errno})"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stvm`` console script and ``python -m stvm``."""
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return int(args.fn(args) or 0)
    except StvmError as err:
        print(f"stvm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"stvm {args.command}: error: {os_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stvm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"stvm {args.command}: terminated", file=sys.stderr)
        return 143
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
