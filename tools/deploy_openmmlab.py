#!/usr/bin/env python
"""Export an mmdet / mmseg model to ONNX with mmdeploy (ONNX Runtime), checked against PyTorch on images: ``python
tools/deploy_openmmlab.py --help``. The logic and its documentation: resnest_backbones/apps/openmmlab_deploy.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.openmmlab_deploy import main

if __name__ == "__main__":
    sys.exit(main())
