rule synth:
    input:
        code=stage_code("synth"),
    output:
        directory("data/raw/synth/source"),
        directory("data/raw/synth/target"),
        "data/raw/synth/synth.json",
    threads: lookup(dpath="synth/workers", within=config, default=1)
    params:
        params_file=PARAMS,
        synth=config["synth"],
    log:
        "logs/synth.log",
    shell:
        "python -m stvm synth --out data/raw/synth --params {params.params_file} 2> {log}"


rule prepare:
    input:
        root=lookup(dpath="data/{role}/root", within=config),
        code=stage_code("prepare"),
    output:
        directory("data/prepared/{role}/train/images"),
        directory("data/prepared/{role}/train/labels"),
        directory("data/prepared/{role}/val/images"),
        directory("data/prepared/{role}/val/labels"),
        "data/prepared/{role}/manifest.json",
    threads: lookup(dpath="prepare/workers", within=config, default=1)
    params:
        params_file=PARAMS,
        dataset=lookup(dpath="data/{role}/dataset", within=config),
        city=lookup(dpath="data/{role}/city", within=config, default=""),
        role=lookup(dpath="data/{role}", within=config),  # labels/label_encoding, read by --role
        prepare=config["prepare"],
    log:
        "logs/prepare_{role}.log",
    shell:
        "python -m stvm prepare --dataset {params.dataset} --root {input.root}"
        ' --city "{params.city}" --out data/prepared/{wildcards.role} --role {wildcards.role} --params {params.params_file} 2> {log}'
