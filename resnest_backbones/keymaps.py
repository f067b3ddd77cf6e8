"""Checkpoint key layouts and the one mapping between them.

Layouts (``CheckpointFormat``):
- ``official``: the official ResNeSt release and timm (``conv1.0.weight``, ``layer1.0.conv2.bn0.weight``, ``fc``).
  This package's models use these names, so it is also the layout of ``ResNeSt.state_dict()``.
- ``openmmlab``: mmdet's / mmseg's ``ResNeSt``: a ``stem.N`` Sequential instead of ``conv1.N`` + ``bn1``; blocks use
  the official names (mmcv's ``build_norm_layer`` names BN layers ``bnN``, GN layers ``gnN``). Optionally prefixed with
  ``backbone.`` and wrapped in ``{"state_dict": ...}`` as mmengine saves it.
- ``detectron2``: this package's detectron2 export: official names under ``backbone.bottom_up.`` (the backbone
  wrapped by FPN) or ``backbone.`` (plain backbone), wrapped in ``{"model": ...}``.
"""
import re
from typing import Dict, Mapping, Tuple

import torch

OFFICIAL, OPENMMLAB, DETECTRON2 = "official", "openmmlab", "detectron2"
FORMATS = (OFFICIAL, OPENMMLAB, DETECTRON2)
DETECTRON2_PREFIX = "backbone.bottom_up."
OPENMMLAB_PREFIX = "backbone."
WRAPPERS = ("state_dict", "model")  # keys that wrap the state dict (mmengine, detectron2), outermost first
# Top-level modules of mmdet detectors and mmseg segmentors, absent from detectron2 models (which have
# proposal_generator / roi_heads / sem_seg_head): with official names under 'backbone.', they mark an OpenMMLab model
# of ResNeStBackbone, not a detectron2 C4 detector.
OPENMMLAB_HEADS = ("neck.", "rpn_head.", "roi_head.", "bbox_head.", "mask_head.", "decode_head.", "auxiliary_head.")

# OpenMMLab -> official renames, applied to the key's tail (after ``layerX.Y.`` for blocks).
_MM_STEM = {"stem.0.": "conv1.0.", "stem.1.": "conv1.1.", "stem.3.": "conv1.3.", "stem.4.": "conv1.4.",
            "stem.6.": "conv1.6.", "stem.7.": "bn1."}
# Only GroupNorm checkpoints need block renames (mmcv names them gnN; this package keeps the official bnN).
_MM_BLOCK = {"gn1.": "bn1.", "gn2.": "bn2.", "gn3.": "bn3.", "conv2.gn0.": "conv2.bn0.", "conv2.gn1.": "conv2.bn1."}
_BLOCK_KEY = re.compile(r"^(layer\d+\.\d+\.)(.*)$")


def unwrap(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint (``state_dict`` / ``model`` wrappers, DataParallel ``module.`` prefix)."""
    state = checkpoint
    for wrapper in WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not state:
        raise ValueError("Checkpoint holds no state dict (expected a mapping of tensors, or one under "
                         "'state_dict' / 'model').")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"Checkpoint holds no tensors; its keys are {list(state)[:8]}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _rename(key: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def openmmlab_to_official(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        block = _BLOCK_KEY.match(key)
        out[block.group(1) + _rename(block.group(2), _MM_BLOCK) if block else _rename(key, _MM_STEM)] = value
    return out


def official_to_openmmlab(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official names -> mmdet/mmseg ``ResNeSt`` names (BatchNorm naming, as their BN/SyncBN models use)."""
    stem = {new: old for old, new in _MM_STEM.items()}
    # mmdet/mmseg GN models (gnN) are not a published layout; BN names are what their checkpoints hold.
    return {key if _BLOCK_KEY.match(key) else _rename(key, stem): value for key, value in state.items()}


def detect_format(state: Mapping[str, torch.Tensor]) -> Tuple[str, str]:
    """Return ``(format, prefix)`` of an unwrapped state dict, or raise ValueError naming what was seen."""
    keys = list(state)
    for prefix in (DETECTRON2_PREFIX, OPENMMLAB_PREFIX, ""):
        body = [k[len(prefix):] for k in keys if k.startswith(prefix)]
        if any(k.startswith("stem.") for k in body):
            return OPENMMLAB, prefix
        if any(k.startswith(("conv1.", "layer1.")) for k in body):
            if prefix == OPENMMLAB_PREFIX and any(k.startswith(OPENMMLAB_HEADS) for k in keys):
                return OPENMMLAB, prefix  # an mmdet/mmseg model around our ResNeStBackbone (official names)
            return (DETECTRON2 if prefix else OFFICIAL), prefix
    raise ValueError("Unrecognised checkpoint layout: expected official/timm ResNeSt keys ('conv1.0.weight', "
                     "'layer1.0.conv2.conv.weight'), OpenMMLab keys ('stem.0.weight', optionally under 'backbone.') "
                     f"or a detectron2 export (under '{DETECTRON2_PREFIX}'). First keys seen: {keys[:6]}")


def to_official(checkpoint: Mapping) -> Tuple[str, Dict[str, torch.Tensor]]:
    """Any supported checkpoint -> ``(detected format, state dict in official/timm names)``.

    Keys outside the backbone (detector heads under other prefixes) are left out: they are not the backbone's.
    """
    state = unwrap(checkpoint)
    fmt, prefix = detect_format(state)
    body = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return fmt, (openmmlab_to_official(body) if fmt == OPENMMLAB else body)


def from_official(state: Mapping[str, torch.Tensor], fmt: str) -> Dict:
    """Official-named state dict -> a checkpoint object in layout ``fmt`` (what ``tools/convert_weights.py`` saves)."""
    if fmt == OFFICIAL:
        return dict(state)
    if fmt == OPENMMLAB:
        # As OpenMMLab's own backbone checkpoints: mmdet/mmseg ResNeSt names, no 'backbone.' prefix, so the file
        # works with init_cfg=dict(type='Pretrained', checkpoint=...) of both their ResNeSt and ours.
        return {"state_dict": official_to_openmmlab({k: v for k, v in state.items() if not k.startswith("fc.")})}
    if fmt == DETECTRON2:
        # detectron2's checkpointer loads {"model": ...} as is; no classifier in a detector.
        return {"model": {DETECTRON2_PREFIX + k: v for k, v in state.items() if not k.startswith("fc.")},
                "__author__": "resnest_backbones"}
    raise ValueError(f"Unknown checkpoint format {fmt!r}; choose one of {FORMATS}")
