"""The runs a study compares: the one table of adaptation variants (paper Table IV, plus AdaBN).

Everything else derives from ``VARIANTS``: ``params.yaml``'s ``variants`` are checked against it
(``stvm.config``), the CLI's ``--variant`` choices, the adaptation loop's switches, the report's row
order (``RUN_ORDER``), and the Snakemake wildcard pattern (built from ``params.yaml``'s variants).
Pure data, no imports: every layer may read it.

| variant  | photometric aug | mean teacher | metric + reliability (MGS) | MOCM |
|----------|-----------------|--------------|----------------------------|------|
| AdaBN    | no training: the source model with BN statistics re-estimated on the target images |
| ST       |                 |              |                            |      |
| ST_Aug   | x               |              |                            |      |
| ST_MT    | x               | x            |                            |      |
| STvM_Raw | x               | x            | x                          |      |
| STvM     | x               | x            | x                          | x    |

``AdaBN`` is not in the paper: it is the reference for what self-training adds beyond the target
BatchNorm statistics, which every variant starts from when ``adapt.bn_init`` is ``target``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """Which pieces of STvM are on (paper Table IV)."""

    augment: bool
    mean_teacher: bool
    metric: bool
    mocm: bool
    trains: bool = True  # False: AdaBN, the source model with target BN statistics and no steps

    def trains_metric(self, metric_probe: bool) -> bool:
        """M is trained when its reliability is used, and as a probe beside a mean teacher that does
        not use it (ST_MT with ``adapt.metric_probe``: Table VII's ST_MT row)."""
        return self.metric or (self.mean_teacher and metric_probe)


VARIANTS: dict[str, Variant] = {
    "AdaBN": Variant(False, False, False, False, trains=False),
    "ST": Variant(False, False, False, False),
    "ST_Aug": Variant(True, False, False, False),
    "ST_MT": Variant(True, True, False, False),
    "STvM_Raw": Variant(True, True, True, False),
    "STvM": Variant(True, True, True, True),
}

#: Runs trained with labels by ``stvm train_source`` (the rest are adapted): the source model, and the
#: benchmark's Oracle trained on *target* labels (``stvm synth_benchmark``: a ceiling, never an input).
TRAINED = ("Source", "Oracle")
#: Row order of every table and figure: the source model, the variants as above, the ceiling.
RUN_ORDER = ("Source", *VARIANTS, "Oracle")
