"""MMSegmentation adapter: ``import resnest_backbones.mmseg`` registers ``ResNeStBackbone`` in mmseg's ``MODELS``.

Configs import it with ``custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)``.
Importing registers and changes nothing else; runs that need a stack fix opt in from their config
(``resnest_backbones.openmmlab.runner``; docs/openmmlab.md).
"""
from mmseg.registry import MODELS

from .arguments import MMSEG
from .backbone import ResNeStBackbone as _ResNeStBackbone
from .registration import register


class ResNeStBackbone(_ResNeStBackbone):
    """``resnest_backbones.openmmlab.ResNeStBackbone`` with mmseg's defaults (norm_eval=False, stem_channels=64)."""

    framework_defaults = MMSEG


__all__ = ["ResNeStBackbone"]

register(MODELS, ResNeStBackbone)
