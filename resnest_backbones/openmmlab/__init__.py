"""OpenMMLab adapter: ``ResNeStBackbone`` for MMDetection and MMSegmentation, a drop-in for their own ``ResNeSt``
(same arguments and meanings; imports mmengine only).

Importing registers and changes nothing else:

- ``resnest_backbones.openmmlab.mmdet`` (alias ``resnest_backbones.mmdet``): ``ResNeStBackbone`` with mmdet's
  defaults in mmdet's ``MODELS``;
- ``resnest_backbones.openmmlab.mmseg`` (alias ``resnest_backbones.mmseg``): with mmseg's defaults in mmseg's;
- ``resnest_backbones.openmmlab.runner``: ``SafeRunner`` and ``WeightsOnlyCheckpointHook`` (CPU distributed runs,
  mmengine checkpoints under weights-only loading), for configs that select them;
- ``resnest_backbones.openmmlab.lvis``: ``NumpyCompatLVISMetric`` (LVIS evaluation on numpy >= 1.24).

Both frameworks already register a ``ResNeSt`` of their own, hence the distinct name. Mirrors
``resnest_backbones.detectron2``.
"""
from .backbone import ResNeStBackbone

__all__ = ["ResNeStBackbone"]
