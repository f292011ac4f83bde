rule train_source:
    input:
        images="data/prepared/source/train/images",
        labels="data/prepared/source/train/labels",
        code=["stvm/train.py", "stvm/data/datasets.py"],
    output:
        "results/models/Source/seed{seed}/model.pt",
        "results/models/Source/seed{seed}/train_metrics.json",
        "results/models/Source/seed{seed}/plots/train.csv",
    params:
        device=config["common"]["device"],
        protocol=config["common"]["protocol"],
        train_source=config["train_source"],
    log:
        "logs/train_source_seed{seed}.log",
    shell:
        "python -m stvm train_source --quiet --seed {wildcards.seed}"
        " --images {input.images} --labels {input.labels}"
        " --out results/models/Source/seed{wildcards.seed} 2> {log}"
