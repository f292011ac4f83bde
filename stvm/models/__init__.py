"""Segmentation networks (``deeplab``: F/C split, DeepLabV2/V3) and their weights (``weights``)."""

from stvm.models.deeplab import ARCHS, SegModel, build_head, build_model
from stvm.models.weights import (
    import_external_deeplabv2,
    init_backbone,
    load_model_checkpoint,
    save_model_checkpoint,
)

__all__ = [
    "ARCHS",
    "SegModel",
    "build_head",
    "build_model",
    "import_external_deeplabv2",
    "init_backbone",
    "load_model_checkpoint",
    "save_model_checkpoint",
]
