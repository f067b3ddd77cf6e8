#!/usr/bin/env python
"""Convert ResNeSt checkpoints between the official/timm, detectron2 and OpenMMLab layouts: ``python
tools/convert_weights.py --help``. The logic and its documentation: resnest_backbones/apps/convert_weights.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.convert_weights import main

if __name__ == "__main__":
    sys.exit(main())
