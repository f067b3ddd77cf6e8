"""Checkpoint key layouts and the one mapping between them.

Layouts (``CheckpointFormat``):
- ``official``: the official ResNeSt release and timm (``conv1.0.weight``, ``layer1.0.conv2.bn0.weight``, ``fc``).
  This package's models use these names, so it is also the layout of ``ResNeSt.state_dict()``.
- ``openmmlab``: mmdet's / mmseg's ``ResNeSt``: a ``stem.N`` Sequential instead of ``conv1.N`` + ``bn1``; blocks use
  the official names (mmcv's ``build_norm_layer`` names BN layers ``bnN``, GN layers ``gnN``). Optionally prefixed with
  ``backbone.`` and wrapped in ``{"state_dict": ...}`` as mmengine saves it.
- ``detectron2``: this package's detectron2 export: official names under ``backbone.bottom_up.`` (the backbone
  wrapped by FPN) or ``backbone.`` (plain backbone), wrapped in ``{"model": ...}``.
- ``detectron2-fork``: the detectron2-ResNeSt fork (zhanghang1989/detectron2-ResNeSt): detectron2 ResNet names
  (``stem.conv1_1``, ``res2.0.conv1.norm``, ``shortcut``, a split-attention ``conv2.{conv,bn0,fc1,bn1,fc2}``, DCN
  ``conv2_offset``), under ``backbone.bottom_up.`` / ``backbone.`` or bare; its ImageNet files
  (``resnest50_detectron-*.pth``) are bare dicts under ``backbone.bottom_up.``, its detectors ``{"model": ...}``.
"""
import re
from typing import Dict, Mapping, Optional, Tuple

import torch

OFFICIAL, OPENMMLAB, DETECTRON2, D2FORK = "official", "openmmlab", "detectron2", "detectron2-fork"
FORMATS = (OFFICIAL, OPENMMLAB, DETECTRON2, D2FORK)
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


# detectron2-ResNeSt fork <-> official renames: the stem (detectron2 Conv2d layers with a norm child), block tails.
_FORK_STEM = {"stem.conv1_1.norm.": "conv1.1.", "stem.conv1_1.": "conv1.0.", "stem.conv1_2.norm.": "conv1.4.",
              "stem.conv1_2.": "conv1.3.", "stem.conv1_3.norm.": "bn1.", "stem.conv1_3.": "conv1.6.",
              "stem.conv1.norm.": "bn1.", "stem.conv1.": "conv1."}
_FORK_NORMS = {"conv1.norm.": "bn1.", "conv2.norm.": "bn2.", "conv3.norm.": "bn3."}
_FORK_BLOCK_KEY = re.compile(r"^res([2-5])\.(\d+)\.(.*)$")
_OFFICIAL_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.(.*)$")


def _fork_shortcut(avg_down: bool) -> Dict[str, str]:
    # With avg_down the official shortcut is (pool, conv, norm), else (conv, norm); the fork's is conv + .norm.
    return ({"shortcut.norm.": "downsample.2.", "shortcut.": "downsample.1."} if avg_down
            else {"shortcut.norm.": "downsample.1.", "shortcut.": "downsample.0."})


def fork_to_official(state: Mapping[str, torch.Tensor], avg_down: Optional[bool] = None) -> Dict[str, torch.Tensor]:
    """detectron2-ResNeSt fork backbone names (no prefix) -> official names.

    Args:
        state: the fork backbone's state dict.
        avg_down: whether the shortcuts average-pool first (official ``downsample.1/.2`` instead of ``.0/.1``); the
            keys do not say. Default: as the fork builds it, on with split attention (``RADIX > 1`` forces it).
    """
    blocks = [m for m in map(_FORK_BLOCK_KEY.match, state) if m]
    split_blocks = {m.group(1, 2) for m in blocks if m.group(3).startswith("conv2.fc1.")}
    tails = {**_fork_shortcut(bool(split_blocks) if avg_down is None else avg_down), **_FORK_NORMS}
    out = {}
    for key, value in state.items():
        block = _FORK_BLOCK_KEY.match(key)
        if not block:
            out[_rename(key, _FORK_STEM)] = value
            continue
        stage, index, tail = block.groups()
        # DCN offsets become a child of the deformable convolution they steer (our DCN layer owns its offset conv).
        offset = "conv2.conv.offset." if (stage, index) in split_blocks else "conv2.offset."
        out[f"layer{int(stage) - 1}.{index}.{_rename(tail, {'conv2_offset.': offset, **tails})}"] = value
    return out


def official_to_fork(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official names -> detectron2-ResNeSt fork backbone names (no prefix); the classifier is not part of it."""
    avg_down = not any(key.endswith(".downsample.0.weight") for key in state)
    tails = {"conv2.conv.offset.": "conv2_offset.", "conv2.offset.": "conv2_offset.",
             **{new: old for old, new in {**_fork_shortcut(avg_down), **_FORK_NORMS}.items()}}
    # bn1 is the last stem norm of either stem: conv1_3's (deep stem) or conv1's (7x7).
    deep = any(key.startswith("conv1.0.") for key in state)
    stem = {new: old for old, new in _FORK_STEM.items() if old.startswith("stem.conv1_") == deep}
    out = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        block = _OFFICIAL_BLOCK_KEY.match(key)
        if not block:
            out[_rename(key, stem)] = value
            continue
        stage, index, tail = block.groups()
        out[f"res{int(stage) + 1}.{index}.{_rename(tail, tails)}"] = value
    return out


def detect_format(state: Mapping[str, torch.Tensor]) -> Tuple[str, str]:
    """Return ``(format, prefix)`` of an unwrapped state dict, or raise ValueError naming what was seen."""
    keys = list(state)
    for prefix in (DETECTRON2_PREFIX, OPENMMLAB_PREFIX, ""):
        body = [k[len(prefix):] for k in keys if k.startswith(prefix)]
        if any(k.startswith(("stem.conv1_1.", "stem.conv1.")) for k in body):
            return D2FORK, prefix  # detectron2 ResNet stem names (OpenMMLab's stem is a Sequential: stem.0.)
        if any(k.startswith("stem.") for k in body):
            return OPENMMLAB, prefix
        if any(k.startswith(("conv1.", "layer1.")) for k in body):
            if prefix == OPENMMLAB_PREFIX and any(k.startswith(OPENMMLAB_HEADS) for k in keys):
                return OPENMMLAB, prefix  # an mmdet/mmseg model around our ResNeStBackbone (official names)
            return (DETECTRON2 if prefix else OFFICIAL), prefix
    raise ValueError("Unrecognised checkpoint layout: expected official/timm ResNeSt keys ('conv1.0.weight', "
                     "'layer1.0.conv2.conv.weight'), OpenMMLab keys ('stem.0.weight', optionally under 'backbone.'), "
                     f"a detectron2 export (under '{DETECTRON2_PREFIX}') or detectron2-ResNeSt fork keys "
                     f"('stem.conv1_1.weight', 'res2.0.conv1.weight'). First keys seen: {keys[:6]}")


def to_official(checkpoint: Mapping) -> Tuple[str, Dict[str, torch.Tensor]]:
    """Any supported checkpoint -> ``(detected format, state dict in official/timm names)``.

    Keys outside the backbone (detector heads under other prefixes) are left out: they are not the backbone's.
    """
    state = unwrap(checkpoint)
    fmt, prefix = detect_format(state)
    body = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    convert = {OPENMMLAB: openmmlab_to_official, D2FORK: fork_to_official}.get(fmt)
    return fmt, (convert(body) if convert else body)


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
    if fmt == D2FORK:
        # As the fork's ImageNet files (resnest50_detectron-*.pth): a bare dict under backbone.bottom_up.
        return {DETECTRON2_PREFIX + k: v for k, v in official_to_fork(state).items()}
    raise ValueError(f"Unknown checkpoint format {fmt!r}; choose one of {FORMATS}")
