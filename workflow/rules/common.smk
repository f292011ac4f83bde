# Shared declarations only (no logic).
VARIANT_PATTERN = "AdaBN|ST|ST_Aug|ST_MT|STvM_Raw|STvM"
# The one source model every adaptation seed starts from (params.yaml `source_seed`; Table VI).
SOURCE_MODEL = f"results/models/Source/seed{config['source_seed']}/model.pt"
