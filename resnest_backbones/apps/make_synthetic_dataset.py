"""Command line of ``tools/make_synthetic_dataset.py`` (console entry ``resnest-make-synthetic-dataset``): write
the synthetic shapes dataset (COCO + LVIS v1 formats); see ``resnest_backbones/datasets/synthetic_instances.py``.

    python tools/make_synthetic_dataset.py datasets/synthetic_shapes --num-train 800 --num-val 100
"""
import argparse
import json
import sys

from ..cli import add_debug_option, run
from ..datasets import make_synthetic_dataset



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="output folder")
    parser.add_argument("--num-train", type=int, default=800)
    parser.add_argument("--num-val", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--objects-per-image", type=int, nargs=2, default=(2, 6), metavar=("MIN", "MAX"))
    parser.add_argument("--object-size", type=float, nargs=2, default=(0.12, 0.4), metavar=("MIN", "MAX"),
                        help="object diameter as a fraction of the image side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset this tool made in ROOT with other arguments (deletes only the files "
                             "recorded in its synthetic_meta.json; a folder with other files is always refused)")
    return add_debug_option(parser)


def _make(args) -> int:
    paths = make_synthetic_dataset(args.root, args.num_train, args.num_val, args.image_size,
                                   tuple(args.objects_per_image), tuple(args.object_size), args.seed,
                                   args.image_format, args.overwrite)
    print(json.dumps(paths, indent=2))
    return 0


def main(argv=None) -> int:
    """Exit status: 0, or 1 after an error printed as one message (``--debug`` shows the traceback)."""
    return run(_make, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
