# Shared declarations only (no logic).
VARIANT_PATTERN = "|".join(config["variants"])  # names checked against stvm/variants.py by `stvm params`
# The one source model every adaptation seed starts from (params.yaml `source_seed`; Table VI).
SOURCE_MODEL = f"results/models/Source/seed{config['source_seed']}/model.pt"
