"""Command line of ``tools/convert_weights.py`` (console entry ``resnest-convert-weights``): convert a ResNeSt
checkpoint between the official/timm, detectron2 and OpenMMLab layouts.

Examples:
    python tools/convert_weights.py resnest50-528c19ca.pth resnest50_d2.pth --to detectron2 --variant resnest50
    python tools/convert_weights.py resnest50-528c19ca.pth resnest50_mm.pth --to openmmlab
    python tools/convert_weights.py mm_resnest50.pth resnest50_official.pth --to official
"""
import argparse
import sys
from typing import List, Optional

from ..checkpoint import read_checkpoint, resolve_source
from ..cli import add_debug_option, refuse_existing_output, refuse_overwriting_input, run
from ..convert import convert_checkpoint, save_checkpoint
from ..keymaps import FORMATS


def _convert(args: argparse.Namespace) -> int:
    source = resolve_source(args.source)  # the local file (a URL or variant name: its cached download)
    refuse_overwriting_input(args.output, "source", source)
    refuse_existing_output(args.output, args.overwrite)
    checkpoint = read_checkpoint(source, allow_unsafe_pickle=args.allow_unsafe_pickle)
    converted, report = convert_checkpoint(checkpoint, args.to, args.variant, source_name=args.source)
    save_checkpoint(converted, args.output, args.to)
    print(report.summary())
    print(f"saved {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert a ResNeSt checkpoint between the official/timm, detectron2 and OpenMMLab layouts. The "
                    "source layout is detected; whatever is not converted is listed.")
    parser.add_argument("source", help="checkpoint path, URL, or published variant name (e.g. resnest50)")
    parser.add_argument("output", help="where to write the converted checkpoint: .pth (torch.save) or .safetensors; "
                                       "never the input, never an existing file without --overwrite")
    parser.add_argument("--to", required=True, choices=FORMATS, help="target layout")
    parser.add_argument("--variant", help="check the weights against this variant (strict load) before saving")
    parser.add_argument("--allow-unsafe-pickle", action="store_true",
                        help="unpickle any object in the source (only for a file you trust: unpickling can run "
                             "code); without it, only tensors, arrays and plain data are read")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    return add_debug_option(parser)


def main(argv: Optional[List[str]] = None) -> int:
    """Returns the exit status (errors are one message, ``--debug`` for a traceback)."""
    return run(_convert, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
