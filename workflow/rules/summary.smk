# Mean, std and min of mIoU over seeds per run (results/summary/<run>.json; dvc.yaml: stage summary).
rule summary:
    input:
        evals=expand("results/eval/{run}/seed{seed}/metrics.json", run=config["variants"], seed=config["seeds"]),
        reference_evals=expand("results/eval/{run}/seed{seed}/metrics.json", run=REFERENCE_RUNS, seed=[config["source_seed"]]),
        code=stage_code("summary"),
    output:
        directory("results/summary"),
    threads: 1
    log:
        "logs/summary.log",
    shell:
        "python -m stvm summary --eval results/eval --out results/summary 2> {log}"
