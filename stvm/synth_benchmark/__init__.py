"""The synthetic benchmark tier: the method measured on the built-in generator, outside the DVC DAG.

``stvm synth_benchmark`` runs it as resumable phases of stage calls (``steps``: which calls exist and
where they write; ``phases``: run them, read back what they wrote, decide and print). Two presets,
each a params file under ``configs/synth_benchmark/``:

* ``paper_geometry.yaml`` (``make benchmark``): phases geometry, shift, curves and table, at the
  paper's crop rule, the shift frozen from Source, AdaBN and Oracle before any self-trained variant;
* ``calibrated.yaml`` (``make calibrate``, ``make ablation``): phases calibrate (the source model's
  source/target gap) and ablation (every variant and seed at the params' own shift and budget).
"""
