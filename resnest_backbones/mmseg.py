"""MMSegmentation adapter: ``import resnest_backbones.mmseg`` registers ``ResNeStBackbone`` in mmseg's ``MODELS`` (the
framework registers a ``ResNeSt`` of its own, hence the distinct name).

Configs import it with ``custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)``.
Importing registers and changes nothing else; runs that need a stack fix opt in from their config
(``resnest_backbones.openmmlab.runner``; docs/openmmlab.md). The shared OpenMMLab code is ``resnest_backbones.openmmlab``.
"""
from mmseg.registry import MODELS

from .openmmlab.arguments import MMSEG
from .openmmlab.backbone import OpenMMLabResNeStBackbone
from .openmmlab.registration import REGISTERED_NAME, register


class MMSegResNeStBackbone(OpenMMLabResNeStBackbone):
    """``OpenMMLabResNeStBackbone`` with mmseg's defaults: ``norm_eval=False``, ``stem_channels=64``; registered as ``ResNeStBackbone`` in mmseg's ``MODELS``."""

    framework_defaults = MMSEG


__all__ = ["MMSegResNeStBackbone"]

register(MODELS, MMSegResNeStBackbone, REGISTERED_NAME)
