"""Datasets the project makes itself (no downloads): see ``synthetic_instances``."""
from .synthetic_instances import CLASSES, make_synthetic_dataset, synthetic_paths

__all__ = ["CLASSES", "make_synthetic_dataset", "synthetic_paths"]
