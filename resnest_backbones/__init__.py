"""resnest_backbones: ResNeSt (Split-Attention Networks) for detectron2, MMDetection and MMSegmentation.

The core (this package's top level) imports torch only. Framework adapters register on import:
``resnest_backbones.detectron2``, ``resnest_backbones.mmdet``, ``resnest_backbones.mmseg``.
"""
import inspect
import os
from typing import List, Union

from .checkpoint import CheckpointMismatchError, LoadReport, load_pretrained
from .layers import DropBlock2D, FrozenBatchNorm2d
from .memory_efficient import set_memory_efficient
from .resnest import STAGE_NAMES, Bottleneck, ResNeSt
from .split_attention import RadixSoftmax, SplitAttention
from .validation import check_names
from .variants import VARIANTS, get_variant

__version__ = "0.1.0"
__all__ = ["ResNeSt", "Bottleneck", "SplitAttention", "RadixSoftmax", "DropBlock2D", "FrozenBatchNorm2d",
           "create_model", "list_models", "load_pretrained", "LoadReport", "CheckpointMismatchError",
           "set_memory_efficient", "STAGE_NAMES", "VARIANTS", "config_path"]


_RESNEST_ARGUMENTS = [name for name in inspect.signature(ResNeSt).parameters]


def list_models() -> List[str]:
    """Names of every published ResNeSt variant."""
    return list(VARIANTS)


def create_model(name: str, pretrained: Union[bool, str] = False, memory_efficient: bool = False,
                 **overrides) -> ResNeSt:
    """Build variant ``name`` (see ``list_models()``) with any ``ResNeSt`` argument overridden.

    Args:
        name: variant name, e.g. ``"resnest50"`` or ``"resnest50_fast_4s2x40d"``.
        pretrained: ``True`` downloads (once, into the torch hub cache) and loads the official ImageNet weights;
            a path or URL loads that checkpoint instead (any supported layout).
        memory_efficient: train with the memory-efficient formulation
            (``memory_efficient.set_memory_efficient``): same outputs and gradients, less saved memory.
        **overrides: ``ResNeSt`` keyword arguments (``num_classes``, ``output_stride``, ``norm_layer``, ...).

    Example:
        >>> model = create_model("resnest50", out_features=["res4", "res5"])
        >>> [(f["name"], f["channels"], f["stride"]) for f in model.feature_info]
        [('res4', 1024, 16), ('res5', 2048, 32)]
    """
    variant = get_variant(name)
    check_names(overrides, _RESNEST_ARGUMENTS, owner=f"create_model({name!r})")
    model = ResNeSt(**{**variant.kwargs(), **overrides})
    set_memory_efficient(model, memory_efficient)
    model.variant = name
    model.pretrained_cfg = variant.checkpoint
    if pretrained:
        load_pretrained(model, name if pretrained is True else pretrained)
    return model


def config_path(relative: str = "") -> str:
    """Absolute path of a shipped config, e.g.
    ``config_path("mmdet/mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py")``.

    Works from a checkout and from a pip install (configs are installed as ``resnest_backbones/configs``).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
        if os.path.isdir(root):
            path = os.path.join(root, relative)
            if not os.path.exists(path):
                raise FileNotFoundError(f"No shipped config {relative!r} under {root}")
            return path
    raise FileNotFoundError("resnest_backbones' configs are not installed next to the package")
