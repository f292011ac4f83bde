#!/usr/bin/env python3
"""One-command GPU check (issue 19): every CUDA path once, and the paper-scale speed and memory.

``python tools/gpu_check.py`` (``make gpu-check``) on a machine with a CUDA GPU and its own torch
(no DVC, no Snakemake, no ``pip install`` of stvm: the repository root is put on the path) runs five
parts, each in a child process with its own time budget so that a hang costs only that budget and
the JSON keeps whatever finished (whole run designed for < 8 minutes):

* ``env``      versions, the device, and that ``stvm`` imports with this torch/torchvision;
* ``unit``     ``pytest tests/test_cuda.py``: the CPU and the ``cuda``-marked variants;
* ``chain``    synth -> prepare -> train_source -> adapt STvM -> evaluate -> report on tiny
               synthetic data, ``python -m stvm <stage>`` each; outputs exist, mIoU finite;
* ``numerics`` one model and input, CPU fp32 vs CUDA bf16 autocast (``NUMERICS_*`` tolerances);
* ``bench:<arch>``  ``stvm bench``'s figures at the paper's setting: 512x512 crops, batch 2, bf16;
               source-training, ST_MT and STvM iterations/s, STvM / ST_MT, peak GPU memory,
               achieved TFLOP/s of the counted FLOPs, evaluation images/s at 2048x1024 with and
               without MST (fp32, as ``evaluate`` runs).

Writes ``OUT/gpu_check.json`` (default OUT: results/gpu_check) and prints a table; exit 0 when
every part passed, 1 otherwise, 2 when asked for the GPU check without a CUDA device.
``--dry`` runs the same parts on the CPU at tiny sizes (deeplabv2_r18, 64 px) in CI time: the
CUDA tests skip, numerics compares with the CPU's bf16 autocast as a stand-in (reported, not
enforced), and the figures are only required to be finite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from gpu_plan import (  # noqa: F401  (shared with gpu_parts; re-exported for the tests)
    DRY, GPU, MST, NUMERICS_MIN_AGREE, NUMERICS_REL_TOL, ROOT, Plan, child_env, finite, parts_of, write_json,
)


def run_child(part: str, plan: Plan, work: Path, budget: float) -> int:
    """Child process: run one part, write ``work/parts/<part>.json``; exit 0 when it passed."""
    import gpu_parts

    out = work / "parts" / f"{part.replace(':', '_')}.json"
    if part.startswith("bench:"):
        res = gpu_parts.part_bench(plan, work, budget, part.split(":", 1)[1], out)
    else:
        res = getattr(gpu_parts, f"part_{part}")(plan, work, budget)
    write_json(out, res)
    return 0 if res.get("ok") else 1


def run_part(part: str, dry: bool, work: Path, budget: float) -> dict:
    """Run one part in a child process with ``budget`` seconds; its JSON (partial if stopped), its status."""
    out = work / "parts" / f"{part.replace(':', '_')}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", part, "--out", str(work),
           "--budget", str(max(budget - 10, 1))] + (["--dry"] if dry else [])
    t0 = time.monotonic()
    log = work / "logs" / f"{part.replace(':', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=child_env(), stdout=fh, stderr=subprocess.STDOUT, timeout=budget).returncode
        except subprocess.TimeoutExpired:
            rc = None
    res = json.loads(out.read_text()) if out.is_file() else {}
    res["ok"] = rc == 0 and bool(res.get("ok"))
    res["seconds_total"] = round(time.monotonic() - t0, 1)
    if rc is None:
        res["error"] = f"timed out after {budget:.0f} s (figures above, if any, are what finished)"
    elif rc != 0 and not out.is_file():
        res["error"] = f"child exited {rc}: " + log.read_text()[-1500:]
    return res


def run_all(plan: Plan, dry: bool, work: Path, only: list[str] | None) -> dict:
    """Every part in order within the plan's total budget; returns the whole result."""
    deadline, results = time.monotonic() + plan.total_s, {}
    for part in parts_of(plan):
        if only and part.split(":")[0] not in only and part not in only:
            continue
        left = deadline - time.monotonic()
        budget = min(plan.budgets[part.split(":")[0]], left)
        if budget < 20:
            results[part] = {"ok": False, "error": f"skipped: {left:.0f} s left of the {plan.total_s} s budget"}
            continue
        print(f"[gpu_check] {part} (budget {budget:.0f} s) ...", file=sys.stderr, flush=True)
        results[part] = run_part(part, dry, work, budget)
        print(f"[gpu_check] {part}: {'ok' if results[part]['ok'] else 'FAILED'} in {results[part]['seconds_total']} s",
              file=sys.stderr, flush=True)
    return {"mode": "dry (CPU)" if dry else "gpu", "plan": plan.__dict__, "parts": results,
            "ok": bool(results) and all(r["ok"] for r in results.values())}


def _detail(part: str, r: dict) -> str:
    """One-line summary of a part's result for the table."""
    if "error" in r:
        return r["error"].splitlines()[0][:100]
    if part == "env":
        return f"python {r.get('python')} torch {r.get('torch')} torchvision {r.get('torchvision')} {r.get('device', 'no GPU')}"
    if part == "unit":
        return f"{r.get('passed')} passed, {r.get('skipped')} skipped, {r.get('failures')} failed, {r.get('errors')} errors"
    if part == "chain":
        return (f"failed at {r['failed_stage']}" if "failed_stage" in r else
                "mIoU " + ", ".join(f"{k} {v:.2f}" for k, v in r.get("miou", {}).items() if finite(v)))
    if part == "numerics":
        return "; ".join(f"{k}: max diff {100 * v['rel_max_diff']:.2f}% argmax {100 * v['argmax_agree']:.2f}%"
                         for k, v in r.get("rows", {}).items() if "rel_max_diff" in v)
    return "see the table below"


def _fmt(v: object, spec: str = ".2f") -> str:
    return format(v, spec) if finite(v) else "-"


def bench_rows(results: dict) -> list[list[str]]:
    """Rows of the bench table, one per architecture."""
    rows = []
    for part, r in results.items():
        if not part.startswith("bench:"):
            continue
        tr = r.get("train") if isinstance(r.get("train"), dict) else {}
        ad = r.get("adapt") if isinstance(r.get("adapt"), dict) else {}
        st, mt = ad.get("STvM", {}), ad.get("ST_MT", {})
        rows.append([part.split(":", 1)[1], _fmt(tr.get("it_per_s")), _fmt(mt.get("it_per_s")), _fmt(st.get("it_per_s")),
                     _fmt(ad.get("STvM_over_ST_MT"), ".3f"),
                     f"{_fmt(tr.get('peak_gpu_gib'))} / {_fmt(mt.get('peak_gpu_gib'))} / {_fmt(st.get('peak_gpu_gib'))}",
                     f"{_fmt(tr.get('tflops'), '.1f')} / {_fmt(st.get('tflops'), '.1f')}",
                     f"{_fmt(tr.get('gflop_per_step'), ',.0f')} / {_fmt(st.get('gflop_per_step'), ',.0f')}",
                     f"{_fmt(r.get('eval_single_ips'))} / {_fmt(r.get('eval_mst_ips'))}"])
    return rows


def print_table(summary: dict, path: Path) -> None:
    """The parts' status and the bench figures as Markdown tables (stdout)."""
    print(f"\n## gpu_check ({summary['mode']}): {'PASSED' if summary['ok'] else 'FAILED'}  ->  {path}\n")
    print("| part | status | s | detail |\n|---|---|---|---|")
    for part, r in summary["parts"].items():
        print(f"| {part} | {'ok' if r['ok'] else 'FAILED'} | {r.get('seconds_total', '-')} | {_detail(part, r)} |")
    rows = bench_rows(summary["parts"])
    if rows:
        p = summary["plan"]
        print(f"\ncrop {min(p['bench_size'])}, batch {p['batch']}, bf16 autocast; evaluation at "
              f"{p['eval_size'][0]}x{p['eval_size'][1]}, fp32, MST = scales {list(MST['scales'])} + flip\n")
        head = ["arch", "source it/s", "ST_MT it/s", "STvM it/s", "STvM/ST_MT", "peak GiB src/ST_MT/STvM",
                "TFLOP/s src/STvM", "GFLOP/it src/STvM", "eval img/s 1x / MST"]
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny sizes (CI): the same parts, figures only checked finite")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check", help="folder for gpu_check.json, logs, work")
    ap.add_argument("--only", help="comma-separated parts (env,unit,chain,numerics,bench or bench:<arch>)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=600.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    plan = DRY if args.dry else GPU
    out = args.out.resolve()
    if args.child:
        return run_child(args.child, plan, out, args.budget)
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (use --dry for the CPU dry run)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    summary = run_all(plan, args.dry, out, args.only.split(",") if args.only else None)
    write_json(out / "gpu_check.json", summary)
    print_table(summary, out / "gpu_check.json")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
