# Source-free by construction: the only inputs are the source model and the target *images*.
rule adapt:
    input:
        source_model=SOURCE_MODEL,
        target_images="data/prepared/target/train/images",
    output:
        "results/models/{variant}/seed{seed}/model.pt",
        "results/models/{variant}/seed{seed}/adapt_metrics.json",
        "results/models/{variant}/seed{seed}/plots/adapt.csv",
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    params:
        device=config["common"]["device"],
        adapt=config["adapt"],
    log:
        "logs/adapt_{variant}_seed{seed}.log",
    shell:
        "python -m stvm adapt --quiet --variant {wildcards.variant} --seed {wildcards.seed}"
        " --source-model {input.source_model}"
        " --target-images {input.target_images}"
        " --out results/models/{wildcards.variant}/seed{wildcards.seed} 2> {log}"
