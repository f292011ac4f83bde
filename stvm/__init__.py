"""stvm: source-free domain adaptation of semantic segmentation with STvM (Akkaya & Halici, 2022)."""

__version__ = "0.1.0"

from stvm import limits as _limits  # noqa: E402,F401  (decoder pixel limits, before anything loads cv2)
