"""OpenMMLab adapter: ``ResNeStBackbone`` for MMDetection and MMSegmentation (imports mmengine only).

Registration is per framework and happens on import:

- ``resnest_backbones.openmmlab.mmdet`` (alias ``resnest_backbones.mmdet``) registers it in mmdet's ``MODELS``;
- ``resnest_backbones.openmmlab.mmseg`` (alias ``resnest_backbones.mmseg``) registers it in mmseg's ``MODELS``.

Configs list one of them in ``custom_imports``. Both frameworks already register a ``ResNeSt`` of their own, hence
the distinct name. Mirrors ``resnest_backbones.detectron2``.
"""
from .backbone import ResNeStBackbone

__all__ = ["ResNeStBackbone"]
