# Snakemake view of the same DAG as dvc.yaml: each rule is one `python -m stvm <stage>` call.
# Run in the project's container with `make sif` (the image of docker/Dockerfile as build/stvm.sif),
# then `snakemake --cores 4 --use-singularity`; another image: --config container=docker://REGISTRY/stvm:TAG.
configfile: "params.yaml"
container: lookup(dpath="container", within=config, default="build/stvm.sif")  # used only with --use-singularity


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
