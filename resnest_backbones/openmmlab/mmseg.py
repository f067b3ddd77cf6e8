"""MMSegmentation adapter: ``import resnest_backbones.mmseg`` registers ``ResNeStBackbone`` in mmseg's ``MODELS``.

Configs import it with ``custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)``.
Importing also applies the narrow stack fixes mmseg runs need here: mmengine checkpoints readable with
weights-only ``torch.load`` and CPU-only ``--launcher pytorch`` runs.
"""
from mmseg.registry import MODELS

from .backbone import ResNeStBackbone
from .stack_fixes import allow_cpu_distributed, allow_mmengine_checkpoints

__all__ = ["ResNeStBackbone"]

if MODELS.get("ResNeStBackbone") is not ResNeStBackbone:  # idempotent under importlib.reload
    MODELS.register_module(name="ResNeStBackbone", module=ResNeStBackbone)
allow_mmengine_checkpoints()
allow_cpu_distributed()
