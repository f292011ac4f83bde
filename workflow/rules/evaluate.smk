# Target labels are read here and nowhere else.
# The reference runs (REFERENCE_RUNS), one model each.
rule evaluate_reference:
    input:
        model="results/models/{run}/seed{seed}/model.pt",
        snapshots="results/models/{run}/seed{seed}/snapshots",
        images="data/prepared/target/val/images",
        labels="data/prepared/target/val/labels",
        code=stage_code("evaluate"),
    output:
        "results/eval/{run}/seed{seed}/metrics.json",
        "results/eval/{run}/seed{seed}/confusion.json",
        "results/eval/{run}/seed{seed}/scores.json",
        "results/eval/{run}/seed{seed}/curve.json",
        "results/eval/{run}/seed{seed}/eval_info.json",
        directory("results/eval/{run}/seed{seed}/maps"),
    wildcard_constraints:
        run="|".join(REFERENCE_RUNS),
    threads: config["common"]["threads"]
    params:
        params_file=PARAMS,
        device=config["common"]["device"],
        evaluate=config["evaluate"],
    log:
        "logs/evaluate_{run}_seed{seed}.log",
    shell:
        "python -m stvm evaluate --model {input.model}"
        " --images {input.images} --labels {input.labels}"
        " --out results/eval/{wildcards.run}/seed{wildcards.seed} --params {params.params_file} 2> {log}"


rule evaluate:
    input:
        model="results/models/{variant}/seed{seed}/model.pt",
        snapshots="results/models/{variant}/seed{seed}/snapshots",
        images="data/prepared/target/val/images",
        labels="data/prepared/target/val/labels",
        code=stage_code("evaluate"),
    output:
        "results/eval/{variant}/seed{seed}/metrics.json",
        "results/eval/{variant}/seed{seed}/confusion.json",
        "results/eval/{variant}/seed{seed}/scores.json",
        "results/eval/{variant}/seed{seed}/curve.json",
        "results/eval/{variant}/seed{seed}/eval_info.json",
        directory("results/eval/{variant}/seed{seed}/maps"),
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    threads: config["common"]["threads"]
    params:
        params_file=PARAMS,
        device=config["common"]["device"],
        evaluate=config["evaluate"],
    log:
        "logs/evaluate_{variant}_seed{seed}.log",
    shell:
        "python -m stvm evaluate --model {input.model}"
        " --images {input.images} --labels {input.labels}"
        " --out results/eval/{wildcards.variant}/seed{wildcards.seed} --params {params.params_file} 2> {log}"
