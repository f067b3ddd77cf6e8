#!/usr/bin/env python
"""Evaluate an ONNX file made by tools/deploy_openmmlab.py with the model config's own evaluator: ``python
tools/test_openmmlab_onnx.py --help``. The logic and its documentation:
resnest_backbones/apps/openmmlab_onnx_eval.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.openmmlab_onnx_eval import main

if __name__ == "__main__":
    sys.exit(main())
