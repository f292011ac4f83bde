rule synth:
    input:
        code=[
            "stvm/__init__.py",
            "stvm/__main__.py",
            "stvm/cli.py",
            "stvm/cli_parser.py",
            "stvm/config.py",
            "stvm/data/__init__.py",
            "stvm/data/labels.py",
            "stvm/data/synth.py",
            "stvm/data/synth_canvas.py",
            "stvm/data/synth_objects.py",
            "stvm/data/synth_render.py",
            "stvm/data/synth_scene.py",
            "stvm/data/synth_style.py",
            "stvm/errors.py",
            "stvm/io.py",
            "stvm/limits.py",
            "stvm/overrides.py",
            "stvm/threads.py",
            "stvm/variants.py",
            "stvm/yamlsafe.py",
        ],
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
        code=[
            "stvm/__init__.py",
            "stvm/__main__.py",
            "stvm/cli.py",
            "stvm/cli_parser.py",
            "stvm/config.py",
            "stvm/data/__init__.py",
            "stvm/data/convert.py",
            "stvm/data/images.py",
            "stvm/data/labels.py",
            "stvm/data/prepare.py",
            "stvm/data/readers.py",
            "stvm/errors.py",
            "stvm/io.py",
            "stvm/limits.py",
            "stvm/overrides.py",
            "stvm/progress.py",
            "stvm/threads.py",
            "stvm/variants.py",
            "stvm/yamlsafe.py",
        ],
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
