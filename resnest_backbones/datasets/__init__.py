"""Datasets the project makes itself (no downloads), in the real on-disk formats: ``synthetic_instances`` (COCO and
LVIS v1 instance segmentation), ``synthetic_semantic`` (ADE20K and Cityscapes layouts); ``manifest`` records what a
maker wrote, so that it never touches another file."""
from .synthetic_instances import CLASSES, make_synthetic_dataset, synthetic_paths

__all__ = ["CLASSES", "make_synthetic_dataset", "synthetic_paths"]
