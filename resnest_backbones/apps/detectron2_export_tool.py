"""Command line of ``tools/export_detectron2.py``: detectron2's ``tools/deploy/export_model.py`` arguments
(``--format {torchscript,onnx}``, ``--export-method``, ``--config-file``, ``--output``, ``--sample-image``, trailing
config overrides) for ResNeSt detectors from yaml or LazyConfig configs (``detectron2_deployment``).

TorchScript by scripting or tracing (``detectron2_export``), ONNX by tracing (``detectron2_onnx``); either way the
written file is checked against eager PyTorch on the sample image. The weights are loaded strictly and are never
written over; neither is an earlier export, unless ``--overwrite``.

Command line: ``tools/export_detectron2.py``, console entry ``resnest-export-detectron2``, or
``python -m resnest_backbones.apps.detectron2_export_tool``::

    python tools/export_detectron2.py --format onnx \
        --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml --output output/export \
        MODEL.WEIGHTS output/quickstart_mask_rcnn_s14_synthetic/model_final.pth
    python tools/export_detectron2.py --export-method scripting \
        --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml --output output/export \
        MODEL.WEIGHTS output/quickstart_mask_rcnn_s14_synthetic/model_final.pth
"""
import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

from ..cli import add_debug_option, refuse_existing_output, refuse_overwriting_input, run
from .detectron2_export import METHODS, export, model_input, read_sample_image

FORMATS = ("torchscript", "onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a ResNeSt detectron2 detector (yaml or LazyConfig) to "
                                     "TorchScript or ONNX by detectron2's own export paths, and check the written file "
                                     "against eager PyTorch on a sample image.")
    parser.add_argument("--config-file", required=True, help="a detectron2 yaml config or LazyConfig .py (path or "
                        "shipped name)")
    parser.add_argument("--format", choices=FORMATS, default="torchscript",
                        help="torchscript writes model.ts, onnx writes model.onnx (default: torchscript)")
    parser.add_argument("--export-method", choices=METHODS,
                        help="required with --format torchscript; --format onnx uses tracing (the default)")
    parser.add_argument("--output", required=True, help="output folder (model.ts / model.onnx is written there)")
    parser.add_argument("--sample-image", help="image for tracing and the check (default: first test image)")
    parser.add_argument("--opset", type=int, help="ONNX opset version (--format onnx; default 17)")
    parser.add_argument("--overwrite", action="store_true", help="replace model.ts / model.onnx in --output")
    add_debug_option(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides: KEY VALUE for yaml (e.g. MODEL.WEIGHTS x), key=value for LazyConfig "
                        "(e.g. train.init_checkpoint=x)")
    return parser


def _check_arguments(args: argparse.Namespace) -> str:
    """The export method, after the checks of the flags against each other and of the packages ONNX needs."""
    if args.format == "torchscript":
        if args.export_method is None:
            raise ValueError("--format torchscript needs --export-method scripting or tracing")
        if args.opset is not None:
            raise ValueError("--opset is an ONNX setting: use it with --format onnx")
        return args.export_method
    if args.export_method not in (None, "tracing"):
        raise ValueError("--format onnx exports by --export-method tracing (detectron2's TracingAdapter); scripting "
                         "writes TorchScript only")
    for package in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(package)
        except ImportError:
            raise ImportError(f"--format onnx needs the {package} package, which is not installed: pip install "
                              f"{package}") from None
    return "tracing"


def _output_file(args: argparse.Namespace, deployment) -> str:
    """``--output``/model.ts or model.onnx, refused when it is the weights file or (without ``--overwrite``)
    exists."""
    name = "model.onnx" if args.format == "onnx" else "model.ts"
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        refuse_overwriting_input(args.output, deployment.weights_key, deployment.weights)
        raise NotADirectoryError(f"--output {args.output} is a file: --output names a folder ({name} is written "
                                 "there)")
    path = os.path.join(args.output, name)
    refuse_overwriting_input(path, deployment.weights_key, deployment.weights)
    refuse_existing_output(path, args.overwrite)
    return path


def export_main(args: argparse.Namespace) -> str:
    """What ``tools/export_detectron2.py`` does; returns the written file's path."""
    from detectron2.utils.logger import setup_logger

    from .detectron2_deployment import load_deployment
    from .detectron2_onnx import OPSET, check_against_eager, check_opset, export_onnx

    method = _check_arguments(args)
    opset = OPSET if args.opset is None else args.opset
    if args.format == "onnx":
        check_opset(opset)
    setup_logger(name="detectron2")
    # The synthetic dataset is made only for its first image; with --sample-image, class names come from it if made.
    deployment = load_deployment(args.config_file, args.opts, make_datasets=args.sample_image is None)
    path = _output_file(args, deployment)
    sample = args.sample_image or deployment.first_test_image()
    pixels = read_sample_image(sample, deployment.input_format)  # an unreadable image fails before the weights load
    model = deployment.load_model()
    image = model_input(pixels, deployment.min_size_test, deployment.max_size_test).to(deployment.device)
    if args.format == "torchscript":
        return export(model, image, method, args.output)
    os.makedirs(args.output, exist_ok=True)
    export_onnx(model, image, path, deployment.runner_metadata(), opset)
    check_against_eager(path, model, deployment, sample)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line of ``tools/export_detectron2.py``; returns the exit status (errors are one message)."""
    return run(lambda args: export_main(args) and None, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
