#!/usr/bin/env python3
"""Check where a tiny run's stages ran and compare two runs' numbers (tools/deploy.sh).

    python tools/compare_runs.py RUN [OTHER] --expect-container docker|apptainer [--expect-python PATH]

Every ``*_info.json`` under RUN/results must record the expected ``container`` and interpreter
(``python``: the image's, PATH); OTHER's (a venv run on this machine) must record another python. With OTHER, every ``results/eval/*/seed*/metrics.json`` and
``results/summary/*.json`` is compared: equal, or the largest absolute difference is printed; the
model weights are compared tensor by tensor. Exit 0 when the info files are as expected (numbers may
differ: the difference is reported, not judged), 1 otherwise."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def infos(run: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((run / "results").rglob("*_info.json")):
        d = json.loads(p.read_text())
        out[str(p.relative_to(run))] = d.get("evaluation", d) if p.name == "eval_info.json" else d
    return out


def numbers(run: Path) -> dict[str, float]:
    out = {}
    for p in [*sorted((run / "results/eval").glob("*/seed*/metrics.json")), *sorted((run / "results/summary").glob("*.json"))]:
        for k, v in json.loads(p.read_text()).items():
            if isinstance(v, (int, float)):
                out[f"{p.relative_to(run)}:{k}"] = float(v)
    return out


def weights(run: Path) -> dict[str, object]:
    import torch

    return {str(p.relative_to(run)): torch.load(p, map_location="cpu", weights_only=True)
            for p in sorted((run / "results/models").glob("*/seed*/model.pt"))}


def same_tensors(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    return True  # metadata (strings, numbers) is not compared


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("other", type=Path, nargs="?")
    ap.add_argument("--expect-container", required=True, choices=["docker", "apptainer"])
    ap.add_argument("--expect-python", default="/opt/venv/bin/python", help="the image's interpreter")
    args = ap.parse_args()
    want = args.expect_container
    ok = True
    found = infos(args.run)
    if not found:
        print(f"compare_runs: no *_info.json under {args.run}/results", file=sys.stderr)
        return 1
    for name, info in found.items():
        if info.get("container") != want or info.get("python") != args.expect_python:
            print(f"{name}: container={info.get('container')!r} python={info.get('python')!r}; "
                  f"expected {want!r} and {args.expect_python}")
            ok = False
    pythons = sorted({i.get("python") for i in found.values()})
    print(f"{len(found)} stage info files: container={want}, python={', '.join(map(str, pythons))}")
    if args.other:
        for name, info in infos(args.other).items():  # (this machine may itself be a container)
            if info.get("python") in (None, args.expect_python):
                print(f"{args.other}/{name}: python={info.get('python')!r}; expected the venv's")
                ok = False
        a, b = numbers(args.run), numbers(args.other)
        if a.keys() != b.keys():
            print(f"different metric files/keys: {sorted(set(a) ^ set(b))[:5]}")
            ok = False
        diffs = {k: abs(a[k] - b[k]) for k in a.keys() & b.keys()}
        worst = max(diffs, key=diffs.get) if diffs else None
        equal = sum(d == 0 for d in diffs.values())
        print(f"metrics: {equal} of {len(diffs)} numbers equal" +
              (f"; largest difference {diffs[worst]:.3g} ({worst})" if worst and diffs[worst] else ""))
        wa, wb = weights(args.run), weights(args.other)
        same = [k for k in wa if k in wb and same_tensors(wa[k], wb[k])]
        print(f"model weights: {len(same)} of {len(wa)} model.pt files bit-identical"
              + (f"; differ: {', '.join(sorted(set(wa) - set(same)))}" if len(same) < len(wa) else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
