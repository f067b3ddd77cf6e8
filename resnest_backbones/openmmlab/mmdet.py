"""MMDetection adapter: ``import resnest_backbones.mmdet`` registers ``ResNeStBackbone`` in mmdet's ``MODELS``.

Configs import it with ``custom_imports = dict(imports=['resnest_backbones.mmdet'], allow_failed_imports=False)``.
Importing also applies the narrow stack fixes mmdet runs need here: mmengine checkpoints readable with
weights-only ``torch.load``, CPU-only ``--launcher pytorch`` runs, and LVIS evaluation on numpy >= 1.24.
"""
from mmdet.registry import MODELS

from ..compat import enable_lvis_on_numpy2
from .backbone import ResNeStBackbone
from .stack_fixes import allow_cpu_distributed, allow_mmengine_checkpoints

__all__ = ["ResNeStBackbone"]

if MODELS.get("ResNeStBackbone") is not ResNeStBackbone:  # idempotent under importlib.reload
    MODELS.register_module(name="ResNeStBackbone", module=ResNeStBackbone)
allow_mmengine_checkpoints()
allow_cpu_distributed()
enable_lvis_on_numpy2()
