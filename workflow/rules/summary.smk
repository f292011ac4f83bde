# Mean, std and min of mIoU over seeds per run (results/summary/<run>.json; dvc.yaml: stage summary).
rule summary:
    input:
        evals=expand("results/eval/{run}/seed{seed}/metrics.json", run=config["variants"], seed=config["seeds"]),
        reference_evals=expand("results/eval/{run}/seed{seed}/metrics.json", run=REFERENCE_RUNS, seed=[config["source_seed"]]),
        code=[
            "stvm/__init__.py",
            "stvm/__main__.py",
            "stvm/cli.py",
            "stvm/cli_parser.py",
            "stvm/config.py",
            "stvm/data/__init__.py",
            "stvm/data/labels.py",
            "stvm/errors.py",
            "stvm/evaluate/__init__.py",
            "stvm/evaluate/metrics.py",
            "stvm/io.py",
            "stvm/limits.py",
            "stvm/overrides.py",
            "stvm/report/__init__.py",
            "stvm/report/paper.py",
            "stvm/report/paper/README.md",
            "stvm/report/paper/table1_gta5_to_cityscapes.csv",
            "stvm/report/paper/table2_synthia_to_cityscapes.csv",
            "stvm/report/paper/table3_cityscapes_to_nthu.csv",
            "stvm/report/paper/table4_ablation.csv",
            "stvm/report/paper/table5_hyperparameters.csv",
            "stvm/report/paper/table6_variance.csv",
            "stvm/report/paper/table7_metric_silhouette.csv",
            "stvm/report/tables.py",
            "stvm/variants.py",
            "stvm/yamlsafe.py",
        ],
    output:
        directory("results/summary"),
    threads: 1
    log:
        "logs/summary.log",
    shell:
        "python -m stvm summary --eval results/eval --out results/summary 2> {log}"
