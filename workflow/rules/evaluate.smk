# Target labels are read here and nowhere else.
rule evaluate_source:
    input:
        model="results/models/Source/seed{seed}/model.pt",
        images="data/prepared/target/val/images",
        labels="data/prepared/target/val/labels",
    output:
        "results/eval/Source/seed{seed}/metrics.json",
        "results/eval/Source/seed{seed}/confusion.json",
    params:
        device=config["common"]["device"],
        size=[config["prepare"]["width"], config["prepare"]["height"]],
        evaluate=config["evaluate"],
    log:
        "logs/evaluate_Source_seed{seed}.log",
    shell:
        "python -m stvm evaluate --quiet --model {input.model}"
        " --images {input.images} --labels {input.labels}"
        " --out results/eval/Source/seed{wildcards.seed} 2> {log}"


rule evaluate:
    input:
        model="results/models/{variant}/seed{seed}/model.pt",
        images="data/prepared/target/val/images",
        labels="data/prepared/target/val/labels",
    output:
        "results/eval/{variant}/seed{seed}/metrics.json",
        "results/eval/{variant}/seed{seed}/confusion.json",
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    params:
        device=config["common"]["device"],
        size=[config["prepare"]["width"], config["prepare"]["height"]],
        evaluate=config["evaluate"],
    log:
        "logs/evaluate_{variant}_seed{seed}.log",
    shell:
        "python -m stvm evaluate --quiet --model {input.model}"
        " --images {input.images} --labels {input.labels}"
        " --out results/eval/{wildcards.variant}/seed{wildcards.seed} 2> {log}"
