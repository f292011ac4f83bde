# Snakemake view of the same DAG as dvc.yaml: each rule is one `python -m stvm <stage>` call.
# Run in the project's container with `snakemake --cores 4 --use-singularity`.
configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/adapt.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        expand("results/eval/Source/seed{seed}/metrics.json", seed=config["seeds"]),
        expand(
            "results/eval/{variant}/seed{seed}/metrics.json",
            variant=config["variants"],
            seed=config["seeds"],
        ),
