# Target labels are read here and nowhere else.
# The reference runs (REFERENCE_RUNS), one model each.
rule evaluate_reference:
    input:
        model="results/models/{run}/seed{seed}/model.pt",
        snapshots="results/models/{run}/seed{seed}/snapshots",
        images="data/prepared/target/val/images",
        labels="data/prepared/target/val/labels",
        code=[
            "stvm/__init__.py",
            "stvm/__main__.py",
            "stvm/adapt/__init__.py",
            "stvm/adapt/augment.py",
            "stvm/adapt/losses.py",
            "stvm/adapt/metric.py",
            "stvm/cli.py",
            "stvm/cli_parser.py",
            "stvm/compat.py",
            "stvm/config.py",
            "stvm/data/__init__.py",
            "stvm/data/datasets.py",
            "stvm/data/images.py",
            "stvm/data/labels.py",
            "stvm/data/pairs.py",
            "stvm/digest.py",
            "stvm/errors.py",
            "stvm/evaluate/__init__.py",
            "stvm/evaluate/inference.py",
            "stvm/evaluate/maps.py",
            "stvm/evaluate/metrics.py",
            "stvm/evaluate/nets.py",
            "stvm/evaluate/silhouette.py",
            "stvm/evaluate/stage.py",
            "stvm/io.py",
            "stvm/limits.py",
            "stvm/loops.py",
            "stvm/models/__init__.py",
            "stvm/models/deeplab.py",
            "stvm/models/weights.py",
            "stvm/overrides.py",
            "stvm/progress.py",
            "stvm/runtime.py",
            "stvm/threads.py",
            "stvm/variants.py",
            "stvm/yamlsafe.py",
        ],
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
        code=[
            "stvm/__init__.py",
            "stvm/__main__.py",
            "stvm/adapt/__init__.py",
            "stvm/adapt/augment.py",
            "stvm/adapt/losses.py",
            "stvm/adapt/metric.py",
            "stvm/cli.py",
            "stvm/cli_parser.py",
            "stvm/compat.py",
            "stvm/config.py",
            "stvm/data/__init__.py",
            "stvm/data/datasets.py",
            "stvm/data/images.py",
            "stvm/data/labels.py",
            "stvm/data/pairs.py",
            "stvm/digest.py",
            "stvm/errors.py",
            "stvm/evaluate/__init__.py",
            "stvm/evaluate/inference.py",
            "stvm/evaluate/maps.py",
            "stvm/evaluate/metrics.py",
            "stvm/evaluate/nets.py",
            "stvm/evaluate/silhouette.py",
            "stvm/evaluate/stage.py",
            "stvm/io.py",
            "stvm/limits.py",
            "stvm/loops.py",
            "stvm/models/__init__.py",
            "stvm/models/deeplab.py",
            "stvm/models/weights.py",
            "stvm/overrides.py",
            "stvm/progress.py",
            "stvm/runtime.py",
            "stvm/threads.py",
            "stvm/variants.py",
            "stvm/yamlsafe.py",
        ],
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
