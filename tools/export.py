#!/usr/bin/env python
"""Export a ResNeSt backbone to TorchScript or ONNX, checked against eager PyTorch: ``python tools/export.py --help``.
The logic and its documentation: resnest_backbones/apps/export_backbone.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.export_backbone import main

if __name__ == "__main__":
    sys.exit(main())
