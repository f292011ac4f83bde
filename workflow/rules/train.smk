rule train_source:
    input:
        images="data/prepared/source/train/images",
        labels="data/prepared/source/train/labels",
        code=[
            "stvm/__init__.py",
            "stvm/__main__.py",
            "stvm/cli.py",
            "stvm/cli_parser.py",
            "stvm/compat.py",
            "stvm/config.py",
            "stvm/data/__init__.py",
            "stvm/data/datasets.py",
            "stvm/data/images.py",
            "stvm/data/labels.py",
            "stvm/digest.py",
            "stvm/errors.py",
            "stvm/io.py",
            "stvm/limits.py",
            "stvm/loops.py",
            "stvm/models/__init__.py",
            "stvm/models/deeplab.py",
            "stvm/models/weights.py",
            "stvm/overrides.py",
            "stvm/plots.py",
            "stvm/progress.py",
            "stvm/runtime.py",
            "stvm/threads.py",
            "stvm/train.py",
            "stvm/variants.py",
            "stvm/yamlsafe.py",
        ],
    output:
        "results/models/Source/seed{seed}/model.pt",
        directory("results/models/Source/seed{seed}/snapshots"),
        "results/models/Source/seed{seed}/train_metrics.json",
        "results/models/Source/seed{seed}/train_info.json",
        "results/models/Source/seed{seed}/plots/train.csv",
        directory("results/models/Source/seed{seed}/plots/train"),
    threads: config["common"]["threads"]
    params:
        params_file=PARAMS,
        device=config["common"]["device"],
        protocol=config["common"]["protocol"],
        train_source=config["train_source"],
    log:
        "logs/train_source_seed{seed}.log",
    shell:
        "python -m stvm train_source --seed {wildcards.seed}"
        " --images {input.images} --labels {input.labels}"
        " --out results/models/Source/seed{wildcards.seed} --params {params.params_file} 2> {log}"
