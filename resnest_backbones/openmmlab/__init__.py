"""What MMDetection's and MMSegmentation's adapters share (imports mmengine only): ``OpenMMLabResNeStBackbone`` (a
drop-in for their own ``ResNeSt``: same arguments and meanings), the argument translation, weights, registration.

The adapters register it (importing registers and changes nothing else; the import path configs use):

- ``resnest_backbones.mmdet``: ``MMDetResNeStBackbone`` (mmdet's defaults) as ``ResNeStBackbone`` in mmdet's
  ``MODELS``;
- ``resnest_backbones.mmseg``: ``MMSegResNeStBackbone`` (mmseg's defaults) as ``ResNeStBackbone`` in mmseg's.

Opt-in stack fixes that configs select: ``resnest_backbones.openmmlab.runner`` (``SafeRunner``,
``WeightsOnlyCheckpointHook``: CPU distributed runs, mmengine checkpoints under weights-only loading),
``resnest_backbones.openmmlab.lvis`` (``NumpyCompatLVISMetric``: LVIS evaluation on numpy >= 1.24). Mirrors
``resnest_backbones.detectron2``.
"""
from .backbone import OpenMMLabResNeStBackbone

__all__ = ["OpenMMLabResNeStBackbone"]
