"""MMDetection adapter: ``import resnest_backbones.mmdet`` registers ``ResNeStBackbone`` in mmdet's ``MODELS`` (the
framework registers a ``ResNeSt`` of its own, hence the distinct name).

Configs import it with ``custom_imports = dict(imports=['resnest_backbones.mmdet'], allow_failed_imports=False)``.
Importing registers and changes nothing else; runs that need a stack fix opt in from their config
(``resnest_backbones.openmmlab.runner``, ``resnest_backbones.openmmlab.lvis``; docs/openmmlab.md). The shared OpenMMLab code is ``resnest_backbones.openmmlab``.
"""
from mmdet.registry import MODELS

from .openmmlab.arguments import MMDET
from .openmmlab.backbone import OpenMMLabResNeStBackbone
from .openmmlab.registration import REGISTERED_NAME, register


class MMDetResNeStBackbone(OpenMMLabResNeStBackbone):
    """``OpenMMLabResNeStBackbone`` with mmdet's defaults: ``norm_eval=True``, ``stem_channels=base_channels``; registered as ``ResNeStBackbone`` in mmdet's ``MODELS``."""

    framework_defaults = MMDET


__all__ = ["MMDetResNeStBackbone"]

register(MODELS, MMDetResNeStBackbone, REGISTERED_NAME)
