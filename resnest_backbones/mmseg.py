"""``import resnest_backbones.mmseg``: the import path configs use in ``custom_imports``; the adapter itself is
``resnest_backbones.openmmlab.mmseg``."""
from .openmmlab.mmseg import ResNeStBackbone  # noqa: F401  (importing registers it in mmseg's MODELS)
