"""Segmentation networks (``deeplab``: F/C split, DeepLabV2/V3), their weights (``weights``) and
models from elsewhere (``importers``, imported by ``stvm import`` alone, so the stages do not load it)."""

from stvm.models.deeplab import ARCHS, SegModel, build_head, build_model
from stvm.models.weights import init_backbone, load_model_checkpoint, save_model_checkpoint

__all__ = [
    "ARCHS",
    "SegModel",
    "build_head",
    "build_model",
    "init_backbone",
    "load_model_checkpoint",
    "save_model_checkpoint",
]
