"""Convert a detectron2-ResNeSt fork model to native files: its yaml to a complete config of this plugin (fork keys
translated, every translation printed), and optionally its weights to a checkpoint in this plugin's names
(``tools/convert_fork_config.py``). Both are checked by building the model from the written config and loading the
written weights into it through ``ResNeStCheckpointer``.

Not needed to run a fork model (``tools/train_net.py`` reads the fork's yaml and checkpoints directly): this is for
leaving the fork's formats behind.

Command line: ``tools/convert_fork_config.py``, console entry ``resnest-convert-fork-config``, or
``python -m resnest_backbones.apps.detectron2_fork_convert``::

    python tools/convert_fork_config.py \
        <fork>/configs/COCO-InstanceSegmentation/mask_rcnn_ResNeSt_50_FPN_syncBN_1x.yaml \
            mask_rcnn_s50_native.yaml --weights mask_rcnn_ResNeSt_50_FPN_syncBN_1x-f442d863.pth mask_rcnn_s50_native.pth
"""
import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

from ..atomic_io import atomic_save, atomic_write_text
from ..checkpoint import read_checkpoint
from ..cli import add_debug_option, refuse_existing_output, run
from ..keymaps import D2FORK, DETECTRON2, detect_format, from_official, to_official, unwrap

logger = logging.getLogger("detectron2.resnest_backbones")


def convert_weights(source: str, output: str, allow_unsafe_pickle: bool = False) -> str:
    """A fork checkpoint (detector or ImageNet backbone) -> ``{"model": ...}`` in this plugin's names at ``output``;
    returns what was converted."""
    from ..detectron2.fork import FORK_MARKER, fork_detector_checkpoint
    raw = read_checkpoint(source, allow_unsafe_pickle)
    fmt, _ = detect_format(unwrap(raw))
    if fmt != D2FORK:
        raise ValueError(f"{source} is not a detectron2-ResNeSt fork checkpoint (its layout is {fmt!r}); "
                         "tools/convert_weights.py converts between the other layouts")
    detector = fork_detector_checkpoint(raw, source)
    if detector is not None:
        detector.pop(FORK_MARKER)
        atomic_save(detector, output)
        return f"detector: {len(detector['model'])} tensors"
    _, official = to_official(raw)
    atomic_save(from_official(official, DETECTRON2), output)
    return f"backbone: {len(official)} tensors"


def main_args(args: argparse.Namespace) -> int:
    from detectron2.modeling import build_model

    from ..detectron2 import ResNeStCheckpointer, load_config
    for path in (args.output, args.weights[1] if args.weights else None):
        if path:
            refuse_existing_output(path, args.overwrite)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = load_config(args.fork_config, args.opts, freeze=False)
    if args.weights:
        print(convert_weights(args.weights[0], args.weights[1], args.allow_unsafe_pickle))
        cfg.MODEL.WEIGHTS = os.path.abspath(args.weights[1])
    atomic_write_text(args.output, cfg.dump())
    # The written files must describe one model: rebuild from the native config and load the native weights.
    import torch
    device = cfg.MODEL.DEVICE if torch.cuda.is_available() else "cpu"  # the check runs anywhere
    native = load_config(args.output, ["MODEL.DEVICE", device], freeze=True)
    if args.weights:
        ResNeStCheckpointer(build_model(native).eval()).load(native.MODEL.WEIGHTS)
    print(f"saved {args.output}" + (f" and {args.weights[1]}" if args.weights else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write a detectron2-ResNeSt fork yaml as a complete native config "
                                     "of resnest_backbones (and optionally its weights in native names).")
    parser.add_argument("fork_config", help="the fork's yaml (its _BASE_ files next to it, as in the fork)")
    parser.add_argument("output", help="the native yaml to write")
    parser.add_argument("--weights", nargs=2, metavar=("FORK_PTH", "NATIVE_PTH"),
                        help="also convert a fork checkpoint (detector or resnest*_detectron ImageNet file)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--allow-unsafe-pickle", action="store_true",
                        help="unpickle any object in FORK_PTH (only for a file you trust)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides applied before translating (last on the command line)")
    return add_debug_option(parser)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``tools/convert_fork_config.py``: returns the exit status."""
    return run(main_args, build_parser(), list(argv) if argv is not None else None)


__all__: List[str] = ["convert_weights", "main"]


if __name__ == "__main__":
    sys.exit(main())
