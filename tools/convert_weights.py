#!/usr/bin/env python
"""Convert ResNeSt checkpoints between layouts; see ``python tools/convert_weights.py -h``.

Examples:
    python tools/convert_weights.py resnest50-528c19ca.pth resnest50_d2.pth --to detectron2 --variant resnest50
    python tools/convert_weights.py resnest50-528c19ca.pth resnest50_mm.pth --to openmmlab
    python tools/convert_weights.py mm_resnest50.pth resnest50_official.pth --to official
"""
import sys

from resnest_backbones.convert import main

if __name__ == "__main__":
    sys.exit(main())
