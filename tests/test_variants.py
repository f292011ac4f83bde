"""stvm.variants: the one table of adaptation variants; every other list of them derives from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stvm.cli import build_parser
from stvm.config import load_params
from stvm.errors import StvmError
from stvm.report.tables import ORDER, order_runs
from stvm.variants import RUN_ORDER, TRAINED, VARIANTS

ROOT = Path(__file__).resolve().parents[1]


def test_table_iv_switches_accumulate_in_the_papers_order():
    trained = [v for v in VARIANTS.values() if v.trains]
    for before, after in zip(trained, trained[1:]):  # each row adds pieces, never removes one
        assert all(b <= a for b, a in zip((before.augment, before.mean_teacher, before.metric, before.mocm),
                                          (after.augment, after.mean_teacher, after.metric, after.mocm)))
    assert not VARIANTS["AdaBN"].trains and VARIANTS["STvM"].mocm
    assert VARIANTS["ST_MT"].trains_metric(True) and not VARIANTS["ST_MT"].trains_metric(False)
    assert VARIANTS["STvM"].trains_metric(False) and not VARIANTS["ST_Aug"].trains_metric(True)


def test_cli_choices_and_report_order_are_the_table():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    variant = next(a for a in sub.choices["adapt"]._actions if a.dest == "variant")
    assert list(variant.choices) == list(VARIANTS)
    assert ORDER == RUN_ORDER == ("Source", *VARIANTS, "Oracle") and set(TRAINED) <= set(RUN_ORDER)
    assert order_runs(["STvM", "zzz", "Source", "AdaBN"]) == ["Source", "AdaBN", "STvM", "zzz"]


def test_params_refuse_a_name_not_in_the_table(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    bad = tmp_path / "params.yaml"
    bad.write_text(re.sub(r"(?m)^variants:.*$", "variants: [STvM, Fancy]", text))
    with pytest.raises(StvmError, match="unknown variant 'Fancy'"):
        load_params(bad)


def test_no_other_file_spells_the_variant_list():
    """A second hand-written list would drift: the Snakefile pattern is built from params.yaml."""
    spelled = re.compile(r"ST_Aug\W+ST_MT|ST_MT\W+STvM_Raw")
    offenders = [str(p.relative_to(ROOT)) for d in ("stvm", "workflow") for p in (ROOT / d).rglob("*")
                 if p.is_file() and p.suffix in (".py", ".smk", "") and p.name != "variants.py"
                 and spelled.search(p.read_text(errors="ignore"))]
    offenders += [f for f in ("dvc.yaml", "Makefile") if spelled.search((ROOT / f).read_text())]
    assert offenders == []
