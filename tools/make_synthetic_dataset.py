#!/usr/bin/env python
"""Write the synthetic shapes dataset (COCO + LVIS v1 formats): ``python tools/make_synthetic_dataset.py --help``. The
logic and its documentation: resnest_backbones/apps/make_synthetic_dataset.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.make_synthetic_dataset import main

if __name__ == "__main__":
    sys.exit(main())
