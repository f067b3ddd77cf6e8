"""Checkpoint conversion between the official/timm, detectron2 and OpenMMLab layouts (``tools/convert_weights.py``).

Every direction goes through the official names; whatever is not part of the ResNeSt backbone (detector heads,
optimizer state, the classifier when the target has none) is reported, never dropped silently.
"""
import argparse
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

import torch

from .checkpoint import load_state
from .keymaps import DETECTRON2, FORMATS, OFFICIAL, OPENMMLAB, detect_format, from_official, to_official, unwrap


@dataclass
class ConversionReport:
    source_format: str
    target_format: str
    converted: int = 0
    not_converted: List[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.source_format} -> {self.target_format}: {self.converted} tensors converted"]
        if self.not_converted:
            lines.append(f"{len(self.not_converted)} keys NOT converted (not part of the ResNeSt backbone, or no "
                         "place for them in the target layout):")
            lines += [f"  {key}" for key in self.not_converted]
        else:
            lines.append("every key was converted")
        return "\n".join(lines)


def convert_checkpoint(checkpoint: Mapping, target: str, variant: Optional[str] = None):
    """Convert ``checkpoint`` (any supported layout) to ``target`` (``official``, ``detectron2``, ``openmmlab``).

    Args:
        checkpoint: a loaded checkpoint object (state dict, or wrapped in ``state_dict`` / ``model``).
        target: target layout.
        variant: optional variant name; when given, the converted weights are loaded strictly into
            ``create_model(variant)`` first, so a checkpoint of another architecture fails here and not later.

    Returns:
        ``(converted checkpoint object, ConversionReport)``.
    """
    if target not in FORMATS:
        raise ValueError(f"Unknown target format {target!r}; choose one of {FORMATS}")
    state = unwrap(checkpoint)
    source_format, prefix = detect_format(state)
    _, official = to_official(checkpoint)
    report = ConversionReport(source_format, target)
    report.not_converted = sorted(k for k in state if not k.startswith(prefix))
    if target != OFFICIAL:
        # Neither detectors nor OpenMMLab backbones have an ImageNet classifier.
        report.not_converted += sorted(k for k in official if k.startswith("fc."))
    if variant is not None:
        from . import create_model, load_pretrained
        load_pretrained(create_model(variant, num_classes=1000 if "fc.weight" in official else 0), official)
    converted = from_official(official, target)
    report.converted = len(unwrap(converted))
    return converted, report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert a ResNeSt checkpoint between the official/timm, detectron2 and OpenMMLab layouts. The "
                    "source layout is detected; keys that are not converted are listed.")
    parser.add_argument("source", help="checkpoint path, URL, or published variant name (e.g. resnest50)")
    parser.add_argument("output", help="where to write the converted checkpoint (.pth)")
    parser.add_argument("--to", required=True, choices=FORMATS, help="target layout")
    parser.add_argument("--variant", help="check the weights against this variant (strict load) before saving")
    parser.add_argument("--allow-unsafe-pickle", action="store_true",
                        help="allow unpickling arbitrary objects (training checkpoints); only for trusted files")
    args = parser.parse_args(argv)
    checkpoint = load_state(args.source, allow_unsafe_pickle=args.allow_unsafe_pickle)
    converted, report = convert_checkpoint(checkpoint, args.to, args.variant)
    torch.save(converted, args.output)
    print(report.summary())
    print(f"saved {args.output}")
    return 0


__all__ = ["convert_checkpoint", "ConversionReport", "main", "OFFICIAL", "OPENMMLAB", "DETECTRON2"]
