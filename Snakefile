# Snakemake view of the same DAG as dvc.yaml: each rule is one `python -m stvm <stage>` call.
# Run in the project's container with `snakemake --cores 4 --use-singularity`.
configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"


rule all:
    input:
        expand("data/prepared/{role}/manifest.json", role=["source", "target"]),
