"""MMDetection adapter: ``import resnest_backbones.mmdet`` registers ``ResNeStBackbone`` in mmdet's ``MODELS``.

Configs import it with ``custom_imports = dict(imports=['resnest_backbones.mmdet'], allow_failed_imports=False)``.
Importing registers and changes nothing else; runs that need a stack fix opt in from their config
(``resnest_backbones.openmmlab.runner``, ``resnest_backbones.openmmlab.lvis``; docs/openmmlab.md).
"""
from mmdet.registry import MODELS

from .arguments import MMDET
from .backbone import ResNeStBackbone as _ResNeStBackbone
from .registration import register


class ResNeStBackbone(_ResNeStBackbone):
    """``resnest_backbones.openmmlab.ResNeStBackbone`` with mmdet's defaults: ``norm_eval=True``,
    ``stem_channels=base_channels``."""

    framework_defaults = MMDET


__all__ = ["ResNeStBackbone"]

register(MODELS, ResNeStBackbone)
