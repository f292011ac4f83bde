import glob

# The report reads every metrics and plots file of the run, the source model and the first seed's models (the
# qualitative panel shows Source and STvM, or the last variant run: stvm/report/stage.py), and the
# target val set. params.yaml is an input because the report prints its hash.


rule report:
    input:
        evals=expand(
            "results/eval/{run}/seed{seed}/{name}.json",
            run=config["variants"],
            seed=config["seeds"],
            name=["metrics", "confusion"],
        ),
        source_evals=expand(
            "results/eval/Source/seed{seed}/{name}.json", seed=[config["source_seed"]], name=["metrics", "confusion"]
        ),
        train=expand(
            "results/models/Source/seed{seed}/{name}",
            seed=[config["source_seed"]],
            name=["train_metrics.json", "plots/train.csv", "model.pt"],
        ),
        adapt=expand(
            "results/models/{variant}/seed{seed}/{name}",
            variant=config["variants"],
            seed=config["seeds"],
            name=["adapt_metrics.json", "plots/adapt.csv"],
        ),
        models=expand("results/models/{run}/seed{seed}/model.pt", run=config["variants"], seed=config["seeds"][:1]),
        manifests=expand("data/prepared/{role}/manifest.json", role=["source", "target"]),
        val_images="data/prepared/target/val/images",
        val_labels="data/prepared/target/val/labels",
        synth="data/raw/synth/synth.json",
        params="params.yaml",
        code=sorted(glob.glob("stvm/report/*.py") + glob.glob("stvm/report/paper/*.csv")),
    output:
        directory("results/report"),
    params:
        device=config["common"]["device"],
        report=config.get("report", {}),
    log:
        "logs/report.log",
    shell:
        "python -m stvm report --quiet --eval results/eval --models results/models"
        " --prepared data/prepared --synth {input.synth} --out results/report 2> {log}"
