"""Command line of ``tools/make_synthetic_segmentation.py`` (console entry ``resnest-make-synthetic-segmentation``):
write the synthetic ADE20K- and Cityscapes-layout datasets the mmseg quick-start configs train on.

    python tools/make_synthetic_segmentation.py       # both: data/synthetic_ade20k, data/synthetic_cityscapes
    python tools/make_synthetic_segmentation.py --layout ade20k --root /tmp/ade --num-train 200
"""
import argparse
import sys

from ..cli import add_debug_option, run
from ..datasets.synthetic_semantic import make_ade20k_layout, make_cityscapes_layout


MAKERS = {"ade20k": (make_ade20k_layout, "data/synthetic_ade20k", (128, 128)),
          "cityscapes": (make_cityscapes_layout, "data/synthetic_cityscapes", (128, 256))}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=[*MAKERS, "both"], default="both")
    parser.add_argument("--root", help="output directory (only with one --layout); default data/synthetic_<layout>")
    parser.add_argument("--num-train", type=int, default=48)
    parser.add_argument("--num-val", type=int, default=12)
    parser.add_argument("--num-classes", type=int, default=5)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="default 128 128 / 128 256")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset this tool made there with other arguments (deletes only the files "
                             "recorded in its synthetic_meta.json; a folder with other files is always refused)")
    return add_debug_option(parser)


def _make(args) -> int:
    layouts = list(MAKERS) if args.layout == "both" else [args.layout]
    if args.root and len(layouts) > 1:
        raise ValueError("--root needs a single --layout (ade20k or cityscapes)")
    for layout in layouts:
        make, default_root, default_size = MAKERS[layout]
        info = make(args.root or default_root, args.num_train, args.num_val, args.image_size or default_size,
                    args.num_classes, args.seed, overwrite=args.overwrite)
        print(f"{layout}: {info['train_images']} train / {info['val_images']} val images, classes "
              f"{info['classes']} -> {info['root']}")
    return 0


def main(argv=None) -> int:
    """Exit status: 0, or 1 after an error printed as one message (``--debug`` shows the traceback)."""
    return run(_make, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
