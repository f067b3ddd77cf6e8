#!/usr/bin/env python
"""Export a ResNeSt backbone to TorchScript or ONNX and check the export against eager PyTorch.

Examples:
    python tools/export.py resnest50 --format onnx --out resnest50.onnx --fast
    python tools/export.py resnest50 --format torchscript --out resnest50.pt --weights resnest50.pth \
        --num-classes 1000 --head
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import resnest_backbones as rb  # noqa: E402
from resnest_backbones import export  # noqa: E402
from resnest_backbones.checkpoint import resolve_source  # noqa: E402
from resnest_backbones.cli import add_debug_option, refuse_overwriting_input, run  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=rb.list_models(), metavar="MODEL", help="variant name (list_models())")
    parser.add_argument("--format", choices=["onnx", "torchscript"], required=True)
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument("--fast", action="store_true",
                        help="fuse BN into convs first (resnest_backbones.fast_inference)")
    parser.add_argument("--weights", help="checkpoint path or URL, any layout load_pretrained accepts")
    parser.add_argument("--num-classes", type=int, default=0, help="build the classification head (needed to "
                        "load a full ImageNet checkpoint)")
    parser.add_argument("--head", action="store_true", help="export the logits instead of res2..res5")
    parser.add_argument("--size", type=int, default=224, help="side of the square tracing input")
    parser.add_argument("--opset", type=int, default=17)
    return add_debug_option(parser)


def _export(args):
    model = rb.create_model(args.model, num_classes=args.num_classes)
    if args.weights:
        weights = resolve_source(args.weights)  # a URL or variant name: its cached download
        refuse_overwriting_input(args.out, "--weights", weights)
        print(rb.load_pretrained(model, weights))
    model.eval()
    example = torch.rand(1, 3, args.size, args.size)
    if args.format == "onnx":
        export.export_onnx(model, args.out, example, fast=args.fast, head=args.head, opset=args.opset)
        error = export.check_onnx(args.out, model, head=args.head)
    else:
        traced = export.export_torchscript(model, args.out, example, fast=args.fast, head=args.head)
        error = export.check_torchscript(traced, model, head=args.head)
    print(f"wrote {args.out}; max relative error against eager on a 2x3x256x320 input: {error:.2e}")
    if error > 1e-4:
        raise RuntimeError(f"the export differs from eager PyTorch (max relative error {error:.2e} > 1e-4); "
                           f"{args.out} was written but should not be used")


def main(argv=None) -> int:
    """Exit status: 0, or 1 after an error printed as one message (``--debug`` shows the traceback)."""
    return run(_export, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
