"""``stvm <command>``: the handler of every subcommand (``stvm --help`` lists them by group).

Each handler (``cmd_<name>``; the arguments are declared in ``stvm.cli_parser``) takes paths from
the command line and hyper-parameters from ``--params`` (else ``params.yaml`` in the current folder,
else the built-in defaults, said once on stderr; validated once by ``stvm.config``), then calls one
library function. A handler reads the params exactly when it calls ``_params`` (the parser gives
exactly those commands ``--params``; ``tests/test_cli.py`` checks both). A ``StvmError`` and an
``OSError`` (missing, unreadable or unwritable path, full disk) become a single line on stderr
naming the path, and exit status 2; SIGTERM is turned into an orderly exit (status 143) so
temporary outputs are removed as on Ctrl-C. Nothing else is caught, so real bugs keep their
traceback. Heavy imports (torch) happen inside the handlers so ``--help`` stays instant.

Why one module over 300 lines: one short handler per command, side by side, so that what each reads
(params or not) and prints is seen in one place; the argument table is apart, in ``stvm.cli_parser``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from pathlib import Path

from stvm import cli_parser
from stvm.errors import ParamError, StvmError
from stvm.io import refuse_overlap

def _params(args: argparse.Namespace, need_file: bool = False):
    """The command's validated params (``params_path``, ``--set`` applied), with its thread count applied."""
    from stvm.config import load_params
    from stvm.threads import apply_threads

    params = load_params(params_path(args, need_file), args.overrides)
    apply_threads(params.common.threads)
    return params


def params_path(args: argparse.Namespace, need_file: bool = False) -> Path | None:
    """``--params FILE`` (which must exist: ``load_params`` says so), else ``params.yaml`` here (stored in
    ``args.params`` for the commands that record it), else None: the built-in defaults, said once on
    stderr (unless --quiet). A command that records its params file (``need_file``) refuses instead."""
    default = cli_parser.DEFAULT_PARAMS
    if args.params is None and default.exists():
        args.params = default
    if args.params is not None:
        return args.params
    if need_file:
        raise StvmError(default, f"params file not found (stvm {args.command} records the params file it runs "
                                 "with: pass --params FILE)")
    if not args.quiet:
        print(f"stvm {args.command}: no {default} here and no --params: using the built-in defaults (the paper's; "
              "`stvm params` lists them)", file=sys.stderr)
    return None


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
        aspect=args.aspect or cfg.aspect, labels=Path(labels) if labels else None, label_encoding=encoding,
        workers=cfg.workers if args.workers is None else args.workers, overwrite=args.overwrite,
        show_progress=not args.quiet,
    )
    _aspect_note(manifest, args.quiet)
    counts = {s: v["count"] for s, v in manifest["splits"].items()}
    print(json.dumps({"dataset": args.dataset, "out": str(args.out), "counts": counts}))
    return 0


def _aspect_note(manifest: dict, quiet: bool) -> None:
    """One line on stderr when frames had another aspect ratio than the output size: a warning with the
    counts when they were stretched, a note (silenced by --quiet) when cropped or padded."""
    counts = {split: (v.get("other_aspect", 0), v["count"]) for split, v in manifest["splits"].items()}
    which = ", ".join(f"{n} of {total} {split}" for split, (n, total) in counts.items() if n)
    if not which:
        return
    (w, h), aspect = manifest["size"], manifest["aspect"]
    if aspect == "stretch":
        print(f"stvm prepare: warning: {which} frames have another aspect ratio than {w}x{h} and were stretched to "
              "it (--aspect crop or pad, or prepare.aspect, keeps the ratio)", file=sys.stderr)
    elif not quiet:
        done = "centre-cropped" if aspect == "crop" else "padded (image: ImageNet mean, label: ignore)"
        print(f"stvm prepare: {which} frames have another aspect ratio than {w}x{h}: {done} to it, then resized",
              file=sys.stderr)


def cmd_train_source(args: argparse.Namespace) -> int:
    from stvm.train import train_source

    p = _params(args)
    result = train_source(
        p.train_source, images=args.images, labels=args.labels, out=args.out, protocol=p.common.protocol,
        seed=p.common.seed if args.seed is None else args.seed, device=p.common.device,
        num_workers=p.common.num_workers, stop_after=args.stop_after, show_progress=not args.quiet,
    )
    print(_done_line("train_source", result, args.out, "train_info.json"))
    return 0


def _done_line(stage: str, result: dict, out: Path, info: str) -> str:
    """The one short line a training stage ends with; the full record is in its info file (rank 0 only)."""
    if not result:
        return f"{stage}: done on this rank (rank 0 writes {out})"
    if "stopped_at" in result:
        return f"{stage}: stopped after iteration {result['stopped_at']} (rerun to resume) -> {out}"
    return (f"{stage}: {result.get('iterations', 0)} iterations in {result.get('wall_seconds', 0.0):.1f} s -> "
            f"{out / 'model.pt'} (details: {out / info})")


def cmd_adapt(args: argparse.Namespace) -> int:
    from stvm.adapt.loop import adapt

    p = _params(args)
    result = adapt(
        p.adapt, variant=args.variant, source_model=args.source_model, target_images=args.target_images,
        out=args.out, seed=p.common.seed if args.seed is None else args.seed, device=p.common.device,
        num_workers=p.common.num_workers, stop_after=args.stop_after, show_progress=not args.quiet,
    )
    print(_done_line(f"adapt {args.variant}", result, args.out, "adapt_info.json"))
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
    from stvm.evaluate.predict import predict_folder

    def note(line: str, warning: bool) -> None:
        if warning or not args.quiet:
            print(f"stvm predict: {'warning: ' if warning else ''}{line}", file=sys.stderr)

    p = _params(args)
    summary = predict_folder(
        args.model, args.images, args.out, scales=p.evaluate.scales if args.scales is None else args.scales,
        flip=p.evaluate.flip if args.flip is None else args.flip,
        batch_size=p.evaluate.batch_size if args.batch_size is None else args.batch_size,
        maps=args.maps, device=args.device or p.common.device, overwrite=args.overwrite, show_progress=not args.quiet,
        note=note,
    )
    print(json.dumps({k: summary[k] for k in ("images", "predicted", "skipped", "wall_seconds")}))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from stvm.export import export_model

    _params(args)  # common.threads: the tracing and the check run on the CPU
    info = export_model(args.model, args.out, fmt=args.format, opset=args.opset)
    print(json.dumps({"out": str(args.out), "format": info["format"], "max_abs_diff": info["check"]["max_abs_diff"],
                      "sidecar": f"{args.out}.json"}))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from stvm.evaluate.score import score_folders
    from stvm.io import write_json

    p = _params(args)  # read (and checked) even with --protocol, as every command that takes --params
    protocol = args.protocol or p.common.protocol
    if args.out is not None:
        refuse_overlap(args.out, [args.pred, args.gt])
    scores = score_folders(args.pred, args.gt, protocol)
    if args.out is not None:
        write_json(args.out, scores)
    print(json.dumps(scores, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from stvm.speed import run_speed

    p = _params(args)  # common.threads, and common.device unless --device
    run_speed(args.stage, arch=args.arch, width=args.width, height=args.height, batch=args.batch, iters=args.iters,
              device=args.device or p.common.device, jobs=args.jobs, threads=args.threads or p.common.threads,
              crop=args.crop)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from stvm.report.tables import ablation_markdown, ablation_rows, collect, write_summary

    rows = ablation_rows(collect(args.eval, args.metric))
    if args.out is not None:
        refuse_overlap(args.out, [args.eval])
        write_summary(rows, args.out, args.metric)
    print(ablation_markdown(rows))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from stvm.report.compare import compare_markdown, experiments, load_exp_show

    print(compare_markdown(experiments(load_exp_show(args.saved, args.all_commits))))
    return 0


def cmd_synth_benchmark(args: argparse.Namespace) -> int:
    from stvm.synth_benchmark.phases import run_benchmark

    if args.overrides:
        raise StvmError(args.params, "stvm synth_benchmark takes no --set: its steps read the params file as a whole")
    return run_benchmark(_params(args, need_file=True), args.params, args.out, args.phase, args.budget, args.quiet, args.jobs)


def cmd_report(args: argparse.Namespace) -> int:
    from stvm.report.stage import report_stage

    p = _params(args, need_file=True)
    summary = report_stage(
        p.report, eval_root=args.eval, models_root=args.models, prepared_root=args.prepared, synth=args.synth,
        params_path=args.params, out=args.out, device=p.common.device,
    )
    print(json.dumps({k: summary[k] for k in ("out", "runs", "seeds")}))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from stvm.models.importers import import_model
    from stvm.models.weights import save_model_checkpoint

    refuse_overlap(args.out, [args.pth])
    p = _params(args)  # read (and checked) even with --protocol, as every command that takes --params
    model, meta = import_model(args.source, args.pth, args.protocol, p.common.protocol,
                               replace_head=args.replace_head, aspp_branches=args.aspp_branches)
    save_model_checkpoint(model, args.out, **meta)
    print(json.dumps({"out": str(args.out), "arch": model.arch, "num_classes": model.num_classes}))
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from stvm.config import params_mapping, params_table
    from stvm.params_file import write_params_file

    _params(args)  # validate
    if args.out is None:
        print(params_table())
        return 0
    refuse_overlap(args.out, [args.params])
    command = shlex.join(["stvm", "params", *(["--params", str(args.params)] if args.params else []),
                          *(x for item in args.overrides for x in ("--set", item)), "--out", str(args.out)])
    write_params_file(params_mapping(args.params, args.overrides), args.out,
                      f"Written by `{command}` (validated; any _base_ merged in): edit the source, not this file.")
    return 0


def cmd_deps(args: argparse.Namespace) -> int:
    from stvm.deps import rule_problems, stage_code, sync

    if args.write or args.check:
        stale = sync(Path.cwd(), write=args.write)
        for path in stale if args.check or not args.quiet else []:
            print(f"{path}: code dependencies {'rewritten' if args.write else 'out of date'}", file=sys.stderr)
        problems = rule_problems(Path.cwd())  # the rules compute theirs: nothing to write, only to name
        for problem in problems:
            print(f"workflow/rules: {problem}", file=sys.stderr)
        return 1 if (stale and args.check) or problems else 0
    for command in args.command_names:
        print("\n".join(stage_code(command)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    handlers = {name[len("cmd_"):]: fn for name, fn in globals().items() if name.startswith("cmd_")}
    return cli_parser.build_parser(handlers)


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
    try:
        args = build_parser().parse_args(argv)
    except cli_parser.UsageError as err:  # one line, as for every bad input (argparse's usage is in --help)
        print(err, file=sys.stderr)
        return 2
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return int(args.fn(args) or 0)
    except StvmError as err:
        params = getattr(args, "params", None) if isinstance(err, ParamError) and err.where is None else None
        print(f"stvm {args.command}: error: {f'{params}: ' if params else ''}{err}", file=sys.stderr)
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
