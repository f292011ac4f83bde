# Shared declarations only (no logic).
from stvm.workflow_params import params_file

# The params file every command reads: params.yaml, or the merged config when --config changed it.
PARAMS = params_file(config)
VARIANT_PATTERN = "|".join(config["variants"])  # names checked against stvm/variants.py by `stvm params`
# The one source model every adaptation seed starts from (params.yaml `source_seed`; Table VI).
SOURCE_MODEL = f"results/models/Source/seed{config['source_seed']}/model.pt"
