# Source-free by construction: the only inputs are the source model and the target *images*.
rule adapt:
    input:
        source_model=SOURCE_MODEL,
        target_images="data/prepared/target/train/images",
        code=stage_code("adapt"),
    output:
        "results/models/{variant}/seed{seed}/model.pt",
        directory("results/models/{variant}/seed{seed}/snapshots"),
        "results/models/{variant}/seed{seed}/adapt_metrics.json",
        "results/models/{variant}/seed{seed}/adapt_info.json",
        "results/models/{variant}/seed{seed}/plots/adapt.csv",
        directory("results/models/{variant}/seed{seed}/plots/adapt"),
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    threads: config["common"]["threads"]
    params:
        params_file=PARAMS,
        device=config["common"]["device"],
        adapt=config["adapt"],
    log:
        "logs/adapt_{variant}_seed{seed}.log",
    shell:
        "python -m stvm adapt --variant {wildcards.variant} --seed {wildcards.seed}"
        " --source-model {input.source_model}"
        " --target-images {input.target_images}"
        " --out results/models/{wildcards.variant}/seed{wildcards.seed} --params {params.params_file} 2> {log}"


# AdaBN, the reference: the source model with BN statistics re-estimated on the target train images
# and no step; it does not depend on the adaptation seed, so the DAG makes it once, at source_seed.
rule adabn:
    input:
        source_model=SOURCE_MODEL,
        target_images="data/prepared/target/train/images",
        code=stage_code("adapt"),
    output:
        "results/models/AdaBN/seed{seed}/model.pt",
        directory("results/models/AdaBN/seed{seed}/snapshots"),
        "results/models/AdaBN/seed{seed}/adapt_metrics.json",
        "results/models/AdaBN/seed{seed}/adapt_info.json",
        "results/models/AdaBN/seed{seed}/plots/adapt.csv",
        directory("results/models/AdaBN/seed{seed}/plots/adapt"),
    threads: config["common"]["threads"]
    params:
        params_file=PARAMS,
        device=config["common"]["device"],
        adapt=config["adapt"],
    log:
        "logs/adapt_AdaBN_seed{seed}.log",
    shell:
        "python -m stvm adapt --variant AdaBN --seed {wildcards.seed}"
        " --source-model {input.source_model}"
        " --target-images {input.target_images}"
        " --out results/models/AdaBN/seed{wildcards.seed} --params {params.params_file} 2> {log}"
