# Shared declarations only (no logic).
from stvm.workflow_params import params_file

# The params file every command reads: params.yaml, or the merged config when --config changed it.
PARAMS = params_file(config)
VARIANT_PATTERN = "|".join(config["variants"])  # the self-trained variants (checked by `stvm params`)
# The reference runs, one model each at source_seed: the source model and AdaBN (seed-independent).
REFERENCE_RUNS = ["Source", "AdaBN"]
# The one source model every adaptation seed starts from (params.yaml `source_seed`; Table VI).
SOURCE_MODEL = f"results/models/Source/seed{config['source_seed']}/model.pt"
