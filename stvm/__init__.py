"""stvm: source-free domain adaptation of semantic segmentation with STvM (Akkaya & Halici, 2022)."""

__version__ = "0.1.0"
