"""The parts of tools/gpu_check.py, each run in its own child process (``--child PART``).

Every part returns a JSON-able dict with ``ok``; ``bench`` also writes what it has after each
measurement, so a part stopped by its time budget still leaves its finished figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

from gpu_plan import MST, NUMERICS_MIN_AGREE, NUMERICS_REL_TOL, ROOT, Plan, child_env, finite, write_json


def part_env(plan: Plan, work: Path, budget: float) -> dict[str, Any]:
    """Versions and device; ``stvm`` (cli, models, every stage module) imports with this torch."""
    import cv2
    import numpy as np
    import torch

    import stvm.adapt.loop  # noqa: F401  (every stage imports: the compat shim with this torchvision)
    import stvm.cli  # noqa: F401
    import stvm.evaluate.stage  # noqa: F401
    import stvm.report.stage  # noqa: F401
    from stvm.compat import ensure_torchvision_ops, torchvision

    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "numpy": np.__version__, "opencv": cv2.__version__, "shimmed_torchvision_ops": ensure_torchvision_ops(),
        "dvc_installed": importlib.util.find_spec("dvc") is not None,
        "snakemake_installed": importlib.util.find_spec("snakemake") is not None,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(device=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                    bf16_supported=torch.cuda.is_bf16_supported())
    info["ok"] = plan.device == "cpu" or (info["cuda_available"] and info.get("bf16_supported", False))
    return info


def _junit_counts(path: Path) -> dict[str, int]:
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def part_unit(plan: Plan, work: Path, budget: float) -> dict[str, Any]:
    """``pytest tests/test_cuda.py``; on the GPU the ``cuda`` variants must run, not skip."""
    env = child_env()
    if plan.device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES") or "0"  # conftest hides GPUs otherwise
    xml = work / "unit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", "tests/test_cuda.py"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=budget)
    counts = _junit_counts(xml) if xml.exists() else {}
    passed = counts.get("tests", 0) - sum(counts.get(k, 0) for k in ("failures", "errors", "skipped"))
    ok = proc.returncode == 0 and passed > 0 and (plan.device == "cpu" or counts.get("skipped", 1) == 0)
    return {"ok": ok, "returncode": proc.returncode, "passed": passed, **counts,
            "output_tail": (proc.stdout + proc.stderr)[-3000:]}


def chain_params(plan: Plan) -> dict[str, Any]:
    """The repository's params.yaml shrunk to tiny synthetic data (as tests/pipeline does)."""
    import yaml

    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key in ("common", "synth", "prepare", "train_source", "adapt"):  # a paper params.yaml may lack some
        p.setdefault(key, {})
    p["common"]["device"] = plan.device
    p["synth"].update(n_source=10, n_target_train=8, n_target_val=4, width=64, height=32, workers=1)
    p["prepare"].update(width=64, height=32, source_holdout=3, workers=1)
    p["train_source"].update(arch="deeplabv2_r18", init="random", iterations=plan.train_iters, crop=32,
                             log_every=max(plan.train_iters // 4, 1), ckpt_every=max(plan.train_iters // 2, 1))
    p["adapt"].update(iterations=plan.adapt_iters, crop=32, log_every=2, ckpt_every=max(plan.adapt_iters // 2, 1),
                      ema_interval=2)
    return p


def chain_commands(w: Path, params: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of every stage call, in order."""
    prep, models, ev = w / "prepared", w / "models", w / "eval"
    src, adapted = models / "Source/seed0", models / "STvM/seed0"
    val = ["--images", prep / "target/val/images", "--labels", prep / "target/val/labels"]
    cmds = [
        ("synth", ["synth", "--out", w / "raw"]),
        ("prepare source", ["prepare", "--dataset", "gta5", "--root", w / "raw/source", "--out", prep / "source"]),
        ("prepare target", ["prepare", "--dataset", "cityscapes", "--root", w / "raw/target",
                            "--out", prep / "target"]),
        ("train_source", ["train_source", "--images", prep / "source/train/images",
                          "--labels", prep / "source/train/labels", "--out", src]),
        ("adapt STvM", ["adapt", "--variant", "STvM", "--source-model", src / "model.pt",
                        "--target-images", prep / "target/train/images", "--out", adapted]),
        ("evaluate Source", ["evaluate", "--model", src / "model.pt", *val, "--out", ev / "Source/seed0"]),
        ("evaluate STvM", ["evaluate", "--model", adapted / "model.pt", *val, "--out", ev / "STvM/seed0"]),
        ("report", ["report", "--eval", ev, "--models", models, "--prepared", prep,
                    "--synth", w / "raw/synth.json", "--out", w / "report"]),
    ]
    head = [sys.executable, "-m", "stvm"]
    return [(name, head + [str(argv[0]), "--params", str(params), "--quiet", *map(str, argv[1:])])
            for name, argv in cmds]


def part_chain(plan: Plan, work: Path, budget: float) -> dict[str, Any]:
    """Every stage on tiny synthetic data, as the DAG calls them; outputs exist and mIoU is finite."""
    import yaml

    w = work / "chain"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    params = w / "params.yaml"
    params.write_text(yaml.safe_dump(chain_params(plan), sort_keys=False))
    deadline, stages = time.monotonic() + budget, {}
    for name, cmd in chain_commands(w, params):
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                                  timeout=max(deadline - t0, 1))
        except subprocess.TimeoutExpired:
            stages[name] = {"error": f"timed out (part budget {budget:.0f} s)"}
            return {"ok": False, "failed_stage": name, "stages": stages}
        stages[name] = {"returncode": proc.returncode, "seconds": round(time.monotonic() - t0, 2)}
        if proc.returncode != 0:
            stages[name]["stderr_tail"] = proc.stderr[-2000:]
            return {"ok": False, "failed_stage": name, "stages": stages}
    return {"stages": stages, **_chain_outputs(w)}


def _chain_outputs(w: Path) -> dict[str, Any]:
    expected = [w / "models/Source/seed0/model.pt", w / "models/STvM/seed0/model.pt", w / "report/report.html",
                w / "eval/Source/seed0/metrics.json", w / "eval/STvM/seed0/metrics.json"]
    missing = [str(p.relative_to(w)) for p in expected if not p.is_file()]
    miou = {run: json.loads((w / f"eval/{run}/seed0/metrics.json").read_text()).get("miou")
            for run in ("Source", "STvM") if (w / f"eval/{run}/seed0/metrics.json").is_file()}
    ok = not missing and len(miou) == 2 and all(finite(v) for v in miou.values())
    return {"ok": ok, "missing": missing, "miou": miou}


def compare_logits(ref, test) -> dict[str, float]:
    """Figures of ``test`` logits against the fp32 reference ``ref`` (both ``(B, C, H, W)``)."""
    diff = (test.float() - ref.float()).abs()
    ref_max = float(ref.abs().max())
    return {"max_abs_diff": float(diff.max()), "ref_max_abs": ref_max, "rel_max_diff": float(diff.max()) / max(ref_max, 1e-12),
            "mean_abs_diff": float(diff.mean()), "argmax_agree": float((test.argmax(1) == ref.argmax(1)).float().mean())}


def _numerics_row(model, x, plan: Plan, enforce_argmax: bool) -> dict[str, Any]:
    """CPU fp32 logits vs the device's bf16 autocast (the CPU's bf16 autocast in a dry run)."""
    import copy

    import torch

    dev = torch.device(plan.device)
    with torch.inference_mode():
        ref = model.eval()(x)
        other = copy.deepcopy(model).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            test = other(x.to(dev)).float().cpu()
    row = compare_logits(ref, test)
    row.update(enforced="rel_max_diff and argmax_agree" if enforce_argmax else "rel_max_diff",
               passed=numerics_pass(row, enforce_argmax), shape=list(x.shape))
    return row


def numerics_pass(row: dict[str, float], enforce_argmax: bool) -> bool:
    """The stated criteria: max |diff| <= NUMERICS_REL_TOL x max |ref|, argmax agreement >= NUMERICS_MIN_AGREE."""
    good = row["rel_max_diff"] <= NUMERICS_REL_TOL
    return bool(good and (not enforce_argmax or row["argmax_agree"] >= NUMERICS_MIN_AGREE))


def part_numerics(plan: Plan, work: Path, budget: float) -> dict[str, Any]:
    """The chain's trained source model on its val images, and a random-init paper network."""
    import numpy as np
    import torch

    from stvm.data.datasets import list_stems, read_rgb
    from stvm.evaluate.inference import normalize
    from stvm.models.deeplab import build_model
    from stvm.models.weights import load_model_checkpoint

    torch.manual_seed(0)
    rows: dict[str, Any] = {}
    src, val = work / "chain/models/Source/seed0/model.pt", work / "chain/prepared/target/val/images"
    if src.is_file() and val.is_dir():
        model, _ = load_model_checkpoint(src)
        x = torch.stack([normalize(read_rgb(val / f"{s}.png")) for s in list_stems(val)[:4]])
        rows["chain Source (trained)"] = _numerics_row(model, x, plan, enforce_argmax=True)
    else:
        rows["chain Source (trained)"] = {"passed": False, "error": f"{src} missing (the chain part failed)"}
    for arch, size in plan.numerics:
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32))
        rows[f"{arch} (random init)"] = _numerics_row(build_model(arch, 19), x, plan, enforce_argmax=False)
    figures_ok = all(finite(r.get("rel_max_diff"), r.get("argmax_agree")) for r in rows.values())
    ok = figures_ok and (plan.device == "cpu" or all(r["passed"] for r in rows.values()))
    return {"ok": ok, "enforced": plan.device == "cuda", "rel_tol": NUMERICS_REL_TOL,
            "min_agree": NUMERICS_MIN_AGREE, "rows": rows}


def _measure(res: dict, key: str, fn: Callable[[], Any], out: Path) -> None:
    """Run one measurement into ``res[key]`` (its error instead on failure) and save the partial JSON."""
    t0 = time.monotonic()
    try:
        res[key] = fn()
    except Exception as exc:  # a failed measurement is a finding to report, not a crash of the check
        res[key] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    res.setdefault("seconds", {})[key] = round(time.monotonic() - t0, 2)
    write_json(out, {**res, "ok": False, "partial": True})


def part_bench(plan: Plan, work: Path, budget: float, arch: str, out: Path) -> dict[str, Any]:
    """``stvm bench``'s train and adapt figures and evaluation throughput for one architecture."""
    import torch

    from stvm.speed.adapt import adapt_figures
    from stvm.speed.train import eval_images_per_second, peak_tflops, train_figures

    dev = torch.device(plan.device)
    (w, h), (ew, eh), b = plan.bench_size, plan.eval_size, plan.batch
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    res: dict[str, Any] = {"arch": arch, "device": name, "peak_bf16_tflops": peak_tflops(name),
                           "crop": min(w, h), "batch": b, "iters": plan.iters, "eval_size": [ew, eh],
                           "mst": {"scales": list(MST["scales"]), "flip": MST["flip"]}}
    _measure(res, "train", lambda: train_figures(arch, w, h, b, plan.iters, dev), out)
    _measure(res, "adapt", lambda: adapt_figures(arch, w, h, b, plan.iters, dev), out)
    _measure(res, "eval_single_ips", lambda: eval_images_per_second(arch, ew, eh, plan.eval_iters, dev), out)
    _measure(res, "eval_mst_ips", lambda: eval_images_per_second(arch, ew, eh, max(plan.eval_iters // 2, 1), dev,
                                                                 **MST), out)
    res["ok"] = bench_ok(res, positive=dev.type == "cuda")
    return res


def bench_ok(res: dict[str, Any], positive: bool) -> bool:
    """Every figure present and finite; on the GPU also positive (a CPU dry run at one iteration
    takes slopes of noise, which can come out negative)."""
    tr, ad = res.get("train"), res.get("adapt")
    if not isinstance(tr, dict) or not isinstance(ad, dict) or "error" in tr or "error" in ad:
        return False
    values = [tr["it_per_s"], tr["tflops"], ad["STvM"]["it_per_s"], ad["ST_MT"]["it_per_s"], ad["STvM_over_ST_MT"],
              ad["STvM"]["tflops"], res.get("eval_single_ips"), res.get("eval_mst_ips")]
    peaks = [d["peak_gpu_gib"] for d in (tr, ad["STvM"], ad["ST_MT"])]
    if positive:
        values += peaks
    elif any(p is not None for p in peaks):
        return False
    return finite(*values) and (not positive or min(values) > 0)
