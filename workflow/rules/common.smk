# Shared declarations only (no logic).
VARIANT_PATTERN = "AdaBN|ST|ST_Aug|ST_MT|STvM_Raw|STvM"
