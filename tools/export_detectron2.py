#!/usr/bin/env python
"""Export a ResNeSt detectron2 detector to TorchScript or ONNX, checked against eager PyTorch: ``python
tools/export_detectron2.py --help``. The logic and its documentation:
resnest_backbones/apps/detectron2_export_tool.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.detectron2_export_tool import main

if __name__ == "__main__":
    sys.exit(main())
