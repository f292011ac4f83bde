# Shared declarations, and the one helper the rules call (stage_code).
from pathlib import Path

from stvm.deps import stage_code as _stage_code
from stvm.workflow_params import params_file

# The params file every command reads: params.yaml, or the merged config when --config changed it.
PARAMS = params_file(config)
VARIANT_PATTERN = "|".join(config["variants"])  # the self-trained variants (checked by `stvm params`)
# The reference runs, one model each at source_seed: the source model and AdaBN (seed-independent).
REFERENCE_RUNS = ["Source", "AdaBN"]
# The one source model every adaptation seed starts from (params.yaml `source_seed`; Table VI).
SOURCE_MODEL = f"results/models/Source/seed{config['source_seed']}/model.pt"


def stage_code(command):
    """A rule's `code` input: the stvm files `python -m stvm <command>` may run (stvm/deps.py), read from
    this checkout at parse time, so the rules hold no generated list (dvc.yaml does: `stvm deps --write`)."""
    return _stage_code(command, Path(workflow.basedir))
