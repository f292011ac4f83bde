"""The paper settings (configs/paper/<setting>.yaml, overlays of configs/paper/base.yaml): each holds
only what differs from the base, validates merged over it, holds Section IV-B's values, and resolves
to the same DAG in DVC and Snakemake. The DAG checks are dry runs in copies of the repo with the
merged setting written as params.yaml (what `make paper` does) and empty raw-data folders, so a typo
in a setting, in dvc.yaml or in a rule cannot ship unnoticed."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from stvm.config import DataRole, load_params, params_mapping
from stvm.params_file import BASE_KEY, read_params_file, write_params_file
from tests.pipeline.conftest import ROOT
from tests.pipeline.test_dag_parity import snakemake_commands

BASE = ROOT / "configs/paper/base.yaml"
SETTINGS = sorted(p for p in (ROOT / "configs/paper").glob("*.yaml") if p != BASE)
CITIES = ("rome", "rio", "tokyo", "taipei")
ARCH = {"dlv2": "deeplabv2_r101", "dlv3": "deeplabv3_r50"}
# (source role, target role, protocol) per scenario (paper IV-A; NTHU Cross-City: one city each).
SCENARIOS = {
    "gta5": (DataRole("gta5", "data/raw/gta5"), DataRole("cityscapes", "data/raw/cityscapes"), 19),
    "synthia": (DataRole("synthia", "data/raw/synthia"), DataRole("cityscapes", "data/raw/cityscapes"), 16),
    **{f"cityscapes_nthu_{c}": (DataRole("cityscapes", "data/raw/cityscapes"),
                                DataRole("nthu", "data/raw/nthu", c.capitalize()), 13) for c in CITIES},
}
# Section IV-B, for every setting and both networks.
PAPER = {
    "prepare": {"width": 1024, "height": 512},
    "train_source": {"batch_size": 2, "crop": 512, "init": "imagenet"},
    "adapt": {"batch_size": 2, "crop": 512, "lr": 2.5e-4, "lr_head": 2.5e-3, "momentum": 0.9,
              "weight_decay": 5e-4, "lr_metric": 3e-4, "poly_power": 0.9, "ema_interval": 100,
              "ema_lambda": 1e-3, "n_f": 128, "temperature": 0.25, "q_m": 0.2, "alpha": 2.0,
              "beta": 0.6, "tau_mocm": 0.8, "n_mocm": 10, "buffer_size": 50, "metric_input": "teacher"},
    "evaluate": {"scales": [1.0], "flip": False},  # the "w/o MST" columns
}

# Table V (stvm/report/paper/): the sensitivity of each hyper-parameter; its best value is IV-B's.
TABLE5 = {r"$\tau_{MOCM}$": "tau_mocm", "$N_{MOCM}$": "n_mocm", "$N_f$": "n_f", "$T$": "temperature",
          "$q_M$": "q_m", r"$\alpha$": "alpha", r"$\beta$": "beta"}


def table5_best() -> dict[str, float]:
    """adapt key -> the value Table V scores best (IV-B's choice), read from the paper's CSV."""
    rows = list(csv.reader((ROOT / "stvm/report/paper/table5_hyperparameters.csv").open()))[1:]
    best = {}
    for name, *cells in rows:
        pairs = [tuple(float(x) for x in c.split(" / ")) for c in cells if c]
        best[TABLE5[name]] = max(pairs, key=lambda vp: vp[1])[0]
    return best


def test_every_paper_setting_is_there():
    expected = {f"{s}_{a}" for s in SCENARIOS for a in ARCH}
    assert {p.stem for p in SETTINGS} == expected


# What a setting may set over the base: its scenario (datasets, protocol, scoring size) and network.
SETTING_KEYS = ("data.", "common.protocol", "prepare.eval_label_size", "train_source.arch")


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value of every non-mapping value in ``tree``."""
    out = {}
    for k, v in tree.items():
        out |= leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v}
    return out


@pytest.mark.parametrize("path", SETTINGS, ids=lambda p: p.stem)
def test_setting_is_an_overlay_holding_only_what_differs_from_the_base(path: Path):
    overlay = yaml.safe_load(path.read_text())
    assert overlay.pop(BASE_KEY) == BASE.name
    base = leaves(yaml.safe_load(BASE.read_text()))
    same = sorted(k for k, v in leaves(overlay).items() if k in base and base[k] == v)
    assert not same, f"{path.name} repeats the base: {same}"
    other = sorted(k for k in leaves(overlay) if not k.startswith(SETTING_KEYS))
    assert not other, f"{path.name}: more than a scenario and a network: {other}"


@pytest.mark.parametrize("path", SETTINGS, ids=lambda p: p.stem)
def test_setting_validates_and_holds_the_papers_values(path: Path):
    p = load_params(path)  # merged over configs/paper/base.yaml
    scenario, arch = path.stem.rsplit("_", 1)
    source, target, protocol = SCENARIOS[scenario]
    assert (p.data.source, p.data.target, p.common.protocol) == (source, target, protocol)
    assert p.train_source.arch == ARCH[arch]
    for section, values in PAPER.items():
        got = {k: getattr(getattr(p, section), k) for k in values}
        assert got == values, f"{path.name}: {section}"
    best = table5_best()
    assert set(best) == set(TABLE5.values())
    assert {k: getattr(p.adapt, k) for k in best} == best, f"{path.name}: not Table V's best values"
    assert p.variants == ["STvM"] and p.common.device == "auto" and p.common.threads == 4


def paper_stages() -> list[str]:
    """The DVC targets `make paper` runs (Makefile PAPER_STAGES), so the test follows the Makefile."""
    m = re.search(r"^PAPER_STAGES\s*:?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, "Makefile defines no PAPER_STAGES"
    return m.group(1).split()


@pytest.fixture(scope="module")
def base_copy(tmp_path_factory) -> Path:
    """Tracked and untracked-not-ignored files of the repo in a fresh git repo (no data)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    dst = tmp_path_factory.mktemp("paper") / "base"
    for rel in files:
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dst, check=True)
    return dst


def install_setting(base: Path, setting: Path) -> Path:
    """A copy of ``base`` with ``setting`` merged over its base as params.yaml (what `make paper`'s
    `stvm params --out` writes) and empty folders for its raw datasets."""
    dst = base.parent / setting.stem
    shutil.copytree(base, dst, symlinks=True)
    write_params_file(params_mapping(setting), dst / "params.yaml", f"{setting.name} merged over its base")
    raw = read_params_file(setting)
    for role in raw["data"].values():
        (dst / role["root"]).mkdir(parents=True, exist_ok=True)
    return dst


def dvc_view(repo: Path, targets: list[str]) -> tuple[set[str], set[str]]:
    """(resolved commands, param keys) of every stage the targets need."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        stages = {s for t in targets for s in r.stage.collect(f"{repo / 'dvc.yaml'}:{t}", with_deps=True)}
        cmds = {" ".join(s.cmd.split()) for s in stages}
        keys = {k for s in stages for d in s.deps if isinstance(d, ParamsDependency) for k in d.params}
    return cmds, keys


def has_key(tree: dict, dotted: str) -> bool:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_each_setting_resolves_to_the_same_dag_in_dvc_and_snakemake(base_copy: Path):
    copies = [install_setting(base_copy, s) for s in SETTINGS]
    with ThreadPoolExecutor(max_workers=4) as pool:  # snakemake -n -p --forceall, one per copy
        snake = dict(zip(copies, pool.map(snakemake_commands, copies)))
    for setting, repo in zip(SETTINGS, copies):
        dvc_cmds, keys = dvc_view(repo, paper_stages())
        assert dvc_cmds == snake[repo], (
            f"{setting.name}: only in dvc: {dvc_cmds - snake[repo]}\nonly in snakemake: {snake[repo] - dvc_cmds}")
        raw = yaml.safe_load((repo / "params.yaml").read_text())  # plain YAML, as DVC and Snakemake read it
        missing = sorted(k for k in keys if not has_key(raw, k))
        assert not missing, f"{setting.name}: params the pipeline reads are missing: {missing}"
        for role in ("source", "target"):
            root, dataset = raw["data"][role]["root"], raw["data"][role]["dataset"]
            assert any(f"--dataset {dataset} --root {root} " in c for c in dvc_cmds), f"{setting.name}: {role}"
        assert any(c.startswith("python -m stvm adapt --variant STvM --seed 0 ") for c in dvc_cmds)
