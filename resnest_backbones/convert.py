"""Checkpoint conversion between the official/timm, detectron2 and OpenMMLab layouts (its command line:
``resnest_backbones/apps/convert_weights.py``, ``tools/convert_weights.py``).

Every direction goes through the official names; whatever is not part of the ResNeSt backbone (detector heads,
the classifier when the target has none) and every entry besides the weights (optimizer state, meta, message hub)
is reported, never dropped silently.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

import torch

from .atomic_io import atomic_save, atomic_write
from .checkpoint import CheckpointMismatchError
from .keymaps import DETECTRON2, FORMATS, OFFICIAL, OPENMMLAB, WRAPPERS, detect_format, from_official, to_official, \
    unwrap
from .safetensors_io import SUFFIX as SAFETENSORS_SUFFIX
from .safetensors_io import safetensors_bytes


@dataclass
class ConversionReport:
    source_format: str
    target_format: str
    converted: int = 0
    not_converted: List[str] = field(default_factory=list)
    # Entries besides the weights (optimizer state, meta, message hub, ...), as "name (type)".
    dropped_entries: List[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.source_format} -> {self.target_format}: {self.converted} tensors converted"]
        if self.dropped_entries:
            lines.append(f"{len(self.dropped_entries)} entries besides the weights NOT converted (training state, "
                         "metadata):")
            lines += [f"  {entry}" for entry in self.dropped_entries]
        if self.not_converted:
            lines.append(f"{len(self.not_converted)} keys NOT converted (not part of the ResNeSt backbone, or no "
                         "place for them in the target layout):")
            lines += [f"  {key}" for key in self.not_converted]
        if not self.dropped_entries and not self.not_converted:
            lines.append("every key was converted")
        return "\n".join(lines)


def dropped_entries(checkpoint: Mapping) -> List[str]:
    """Everything of ``checkpoint`` that is not a tensor of its state dict (what ``keymaps.unwrap`` leaves out):
    the siblings of each wrapper (``meta``, ``optimizer``, ``message_hub``, ``iteration`` ...) and non-tensor values
    in the state dict itself, as ``"path (type)"``."""
    dropped, level, path = [], checkpoint, ""
    for wrapper in WRAPPERS:
        if isinstance(level, Mapping) and isinstance(level.get(wrapper), Mapping):
            dropped += [f"{path}{k} ({type(v).__name__})" for k, v in level.items() if k != wrapper]
            level, path = level[wrapper], f"{path}{wrapper}."
    return dropped + [f"{path}{k} ({type(v).__name__})" for k, v in level.items() if not isinstance(v, torch.Tensor)]


def convert_checkpoint(checkpoint: Mapping, target: str, variant: Optional[str] = None,
                       source_name: str = "the checkpoint"):
    """Convert ``checkpoint`` (any supported layout) to ``target`` (``official``, ``detectron2``, ``openmmlab``).

    Args:
        checkpoint: a loaded checkpoint object (state dict, or wrapped in ``state_dict`` / ``model``).
        target: target layout.
        variant: optional variant name; when given, the converted weights are loaded strictly into
            ``create_model(variant)`` first, so a checkpoint of another architecture fails here and not later.
        source_name: how error messages name the checkpoint (its file).

    Returns:
        ``(converted checkpoint object, ConversionReport)``.
    """
    if target not in FORMATS:
        raise ValueError(f"Unknown target format {target!r}; choose one of {FORMATS}")
    state = unwrap(checkpoint)
    source_format, prefix = detect_format(state)
    _, official = to_official(checkpoint)
    report = ConversionReport(source_format, target, dropped_entries=dropped_entries(checkpoint))
    report.not_converted = sorted(k for k in state if not k.startswith(prefix))
    if target != OFFICIAL:
        # Neither detectors nor OpenMMLab backbones have an ImageNet classifier.
        report.not_converted += sorted(k for k in official if k.startswith("fc."))
    if variant is not None:
        _check_variant(official, variant, source_name)
    converted = from_official(official, target)
    report.converted = len(unwrap(converted))
    return converted, report


def _check_variant(official: Dict[str, torch.Tensor], variant: str, source_name: str) -> None:
    from . import create_model, load_pretrained
    try:
        load_pretrained(create_model(variant, num_classes=1000 if "fc.weight" in official else 0), official)
    except CheckpointMismatchError as error:
        raise CheckpointMismatchError("\n".join([
            f"{source_name} does not fit --variant {variant}:", *error.details,
            "Give the checkpoint's own variant with --variant (e.g. --variant resnest101 for a ResNeSt-101 file; "
            "resnest_backbones.list_models() lists them), or leave --variant out to convert without this check."])) \
            from None


def save_checkpoint(checkpoint: Mapping, path: str, target: str) -> None:
    """Write a converted checkpoint atomically (complete or absent, never half written): a ``.safetensors`` path as
    safetensors (tensors only; the layout recorded in its metadata), any other path with ``torch.save``."""
    if path.endswith(SAFETENSORS_SUFFIX):
        data = safetensors_bytes(checkpoint, {"format": target})
        atomic_write(path, lambda handle: handle.write(data))
    else:
        atomic_save(checkpoint, path)


__all__ = ["convert_checkpoint", "dropped_entries", "save_checkpoint", "ConversionReport", "OFFICIAL",
           "OPENMMLAB", "DETECTRON2"]
