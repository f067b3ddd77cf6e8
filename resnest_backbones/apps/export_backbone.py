"""Command line of ``tools/export.py`` (console entry ``resnest-export``): export a ResNeSt backbone to TorchScript or
ONNX and check the export against eager PyTorch.

Examples:
    python tools/export.py resnest50 --format onnx --out resnest50.onnx --fast-inference
    python tools/export.py resnest50 --format torchscript --out resnest50.pt --weights resnest50.pth \
        --num-classes 1000 --head
"""
import argparse
import sys

import torch

from .. import create_model, export, list_models, load_pretrained
from ..checkpoint import resolve_source
from ..cli import add_debug_option, refuse_existing_output, refuse_overwriting_input, run

SIZES = (32, 4096)  # tracing input side: below the stride, res5 is empty; a 4096 px trace already takes gigabytes
OPSETS = (10, 20)  # 9 cannot express the stem's ceil-mode pooling; 20 is the TorchScript exporter's newest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=list_models(), metavar="MODEL", help="variant name (list_models())")
    parser.add_argument("--format", choices=["onnx", "torchscript"], required=True)
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument("--fast-inference", action="store_true",
                        help="export the fused form (resnest_backbones.fast_inference: BN folded into the convs)")
    parser.add_argument("--weights", help="checkpoint path or URL, any layout load_pretrained accepts")
    parser.add_argument("--num-classes", type=int, default=0, help="build the classification head (needed to "
                        "load a full ImageNet checkpoint)")
    parser.add_argument("--head", action="store_true", help="export the logits instead of res2..res5")
    parser.add_argument("--size", type=int, default=224,
                        help=f"side of the square tracing input, in [{SIZES[0]}, {SIZES[1]}] (the exported model "
                             "takes other sizes too)")
    parser.add_argument("--opset", type=int, default=17, help=f"ONNX opset, in [{OPSETS[0]}, {OPSETS[1]}]")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return add_debug_option(parser)


def check_arguments(args) -> None:
    """The numbers argparse cannot check, named as flags (before anything is built or written)."""
    for flag, value, (low, high), why in (("--size", args.size, SIZES, "at least the network's stride, 32"),
                                          ("--opset", args.opset, OPSETS, "the opsets the TorchScript-based ONNX "
                                                                          "exporter writes this model with")):
        if not low <= value <= high:
            raise ValueError(f"{flag} {value} is out of range: give an integer in [{low}, {high}] ({why}).")


def _export(args):
    check_arguments(args)
    weights = resolve_source(args.weights) if args.weights else None  # a URL or variant name: its cached download
    if weights:
        refuse_overwriting_input(args.out, "--weights", weights)
    refuse_existing_output(args.out, args.overwrite)
    model = create_model(args.model, num_classes=args.num_classes)
    if weights:
        print(load_pretrained(model, weights).summary())
    model.eval()
    example = torch.rand(1, 3, args.size, args.size)
    if args.format == "onnx":
        export.export_onnx(model, args.out, example, fast_inference=args.fast_inference, head=args.head,
                           opset=args.opset)
        error = export.check_onnx(args.out, model, head=args.head)
    else:
        traced = export.export_torchscript(model, args.out, example, fast_inference=args.fast_inference, head=args.head)
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
