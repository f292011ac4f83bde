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
        code=[
            "stvm/__init__.py",
            "stvm/__main__.py",
            "stvm/cli.py",
            "stvm/cli_parser.py",
            "stvm/compat.py",
            "stvm/config.py",
            "stvm/data/__init__.py",
            "stvm/data/images.py",
            "stvm/data/labels.py",
            "stvm/digest.py",
            "stvm/errors.py",
            "stvm/evaluate/__init__.py",
            "stvm/evaluate/metrics.py",
            "stvm/io.py",
            "stvm/limits.py",
            "stvm/overrides.py",
            "stvm/report/__init__.py",
            "stvm/report/bars.py",
            "stvm/report/confusion.py",
            "stvm/report/curves.py",
            "stvm/report/deltas.py",
            "stvm/report/figures.py",
            "stvm/report/panels.py",
            "stvm/report/paper.py",
            "stvm/report/paper/README.md",
            "stvm/report/paper/table1_gta5_to_cityscapes.csv",
            "stvm/report/paper/table2_synthia_to_cityscapes.csv",
            "stvm/report/paper/table3_cityscapes_to_nthu.csv",
            "stvm/report/paper/table4_ablation.csv",
            "stvm/report/paper/table5_hyperparameters.csv",
            "stvm/report/paper/table6_variance.csv",
            "stvm/report/paper/table7_metric_silhouette.csv",
            "stvm/report/provenance.py",
            "stvm/report/render.py",
            "stvm/report/stage.py",
            "stvm/report/tables.py",
            "stvm/runtime.py",
            "stvm/threads.py",
            "stvm/variants.py",
            "stvm/yamlsafe.py",
        ],
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
