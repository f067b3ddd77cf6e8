#!/usr/bin/env python
"""Write the synthetic ADE20K- and Cityscapes-layout segmentation datasets: ``python
tools/make_synthetic_segmentation.py --help``. The logic and its documentation:
resnest_backbones/apps/make_synthetic_segmentation.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.make_synthetic_segmentation import main

if __name__ == "__main__":
    sys.exit(main())
