"""``import resnest_backbones.mmdet``: the import path configs use in ``custom_imports``; the adapter itself is
``resnest_backbones.openmmlab.mmdet``."""
from .openmmlab.mmdet import ResNeStBackbone  # noqa: F401  (importing registers it in mmdet's MODELS)
