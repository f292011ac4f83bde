"""The evaluate stage: inference (single or multi-scale), the metrics, the maps and Table VII."""
