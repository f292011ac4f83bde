# Target labels are read here and nowhere else.
rule evaluate_source:
    input:
        model="results/models/Source/seed{seed}/model.pt",
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
        "results/eval/Source/seed{seed}/metrics.json",
        "results/eval/Source/seed{seed}/confusion.json",
        "results/eval/Source/seed{seed}/scores.json",
        "results/eval/Source/seed{seed}/eval_info.json",
        directory("results/eval/Source/seed{seed}/maps"),
    threads: config["common"]["threads"]
    params:
        params_file=PARAMS,
        device=config["common"]["device"],
        size=[config["prepare"]["width"], config["prepare"]["height"]],
        evaluate=config["evaluate"],
    log:
        "logs/evaluate_Source_seed{seed}.log",
    shell:
        "python -m stvm evaluate --model {input.model}"
        " --images {input.images} --labels {input.labels}"
        " --out results/eval/Source/seed{wildcards.seed} --params {params.params_file} 2> {log}"


rule evaluate:
    input:
        model="results/models/{variant}/seed{seed}/model.pt",
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
        "results/eval/{variant}/seed{seed}/eval_info.json",
        directory("results/eval/{variant}/seed{seed}/maps"),
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    threads: config["common"]["threads"]
    params:
        params_file=PARAMS,
        device=config["common"]["device"],
        size=[config["prepare"]["width"], config["prepare"]["height"]],
        evaluate=config["evaluate"],
    log:
        "logs/evaluate_{variant}_seed{seed}.log",
    shell:
        "python -m stvm evaluate --model {input.model}"
        " --images {input.images} --labels {input.labels}"
        " --out results/eval/{wildcards.variant}/seed{wildcards.seed} --params {params.params_file} 2> {log}"
