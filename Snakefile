# Snakemake view of the same DAG as dvc.yaml: each rule is one `python -m stvm <stage>` call.
# Run in the project's container with `snakemake --cores 4 --use-singularity`.
configfile: "params.yaml"
container: "docker://ghcr.io/stvm/stvm:0.1.0"  # docker/Dockerfile; used only with --use-singularity


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/adapt.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/summary",
        "results/report",
