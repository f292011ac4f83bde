# The report reads every metrics, plots and maps file of the run (the qualitative panel draws the first seed's
# Source and STvM maps, or the last variant run's: stvm/report/stage.py) and the target val set; it loads no
# model. params.yaml is an input because the report prints its hash.


rule report:
    input:
        evals=expand(
            "results/eval/{run}/seed{seed}/{name}.json",
            run=config["variants"],
            seed=config["seeds"],
            name=["metrics", "confusion", "scores", "eval_info", "curve"],
        ),
        maps=expand("results/eval/{run}/seed{seed}/maps", run=config["variants"], seed=config["seeds"]),
        reference_maps=expand("results/eval/{run}/seed{seed}/maps", run=REFERENCE_RUNS, seed=[config["source_seed"]]),
        reference_evals=expand(
            "results/eval/{run}/seed{seed}/{name}.json",
            run=REFERENCE_RUNS,
            seed=[config["source_seed"]],
            name=["metrics", "confusion", "scores", "eval_info", "curve"],
        ),
        train=expand(
            "results/models/Source/seed{seed}/{name}",
            seed=[config["source_seed"]],
            name=["train_metrics.json", "train_info.json", "plots/train.csv"],
        ),
        adapt=expand(
            "results/models/{variant}/seed{seed}/{name}",
            variant=config["variants"],
            seed=config["seeds"],
            name=["adapt_metrics.json", "adapt_info.json", "plots/adapt.csv"],
        ),
        adabn=expand(
            "results/models/AdaBN/seed{seed}/{name}",
            seed=[config["source_seed"]],
            name=["adapt_metrics.json", "adapt_info.json"],
        ),
        manifests=expand("data/prepared/{role}/manifest.json", role=["source", "target"]),
        val_images="data/prepared/target/val/images",
        val_labels="data/prepared/target/val/labels",
        synth="data/raw/synth/synth.json",
        params="params.yaml",
        code=stage_code("report"),
    output:
        directory("results/report"),
    threads: config["common"]["threads"]
    params:
        params_file=PARAMS,
        device=config["common"]["device"],
        report=config.get("report", {}),
    log:
        "logs/report.log",
    shell:
        "python -m stvm report --eval results/eval --models results/models"
        " --prepared data/prepared --synth {input.synth} --out results/report --params {params.params_file} 2> {log}"
