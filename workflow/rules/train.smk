rule train_source:
    input:
        images="data/prepared/source/train/images",
        labels="data/prepared/source/train/labels",
        code=stage_code("train_source"),
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
