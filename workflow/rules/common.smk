# Shared declarations only (no logic): the params file and the roles of the prepared datasets.
ROLES = ["source", "target"]
