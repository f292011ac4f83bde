# Shared declarations only (no logic).
VARIANT_PATTERN = "ST|ST_Aug|ST_MT|STvM_Raw|STvM"
