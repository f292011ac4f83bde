import glob

# The report reads every metrics and plots file of the run, the first seed's Source model and the
# adapted model shown in the qualitative panel (STvM when run, else the last variant in Table IV
# order: stvm/report/stage.py panel_run), and the target val set. params.yaml is an input because
# the report prints its hash.
REPORT_ORDER = ["ST", "ST_Aug", "ST_MT", "STvM_Raw", "STvM"]
REPORT_VARIANTS = sorted(config["variants"], key=REPORT_ORDER.index)
REPORT_PANEL = ["Source"] + (["STvM"] if "STvM" in REPORT_VARIANTS else REPORT_VARIANTS[-1:])


rule report:
    input:
        evals=expand(
            "results/eval/{run}/seed{seed}/{name}.json",
            run=["Source", *config["variants"]],
            seed=config["seeds"],
            name=["metrics", "confusion"],
        ),
        train=expand(
            "results/models/Source/seed{seed}/{name}",
            seed=config["seeds"],
            name=["train_metrics.json", "plots/train.csv"],
        ),
        adapt=expand(
            "results/models/{variant}/seed{seed}/{name}",
            variant=config["variants"],
            seed=config["seeds"],
            name=["adapt_metrics.json", "plots/adapt.csv"],
        ),
        models=expand("results/models/{run}/seed{seed}/model.pt", run=REPORT_PANEL, seed=config["seeds"][:1]),
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
