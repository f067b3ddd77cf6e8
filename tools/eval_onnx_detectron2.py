#!/usr/bin/env python
"""Evaluate an exported detectron2 ONNX model with detectron2's evaluator: ``python tools/eval_onnx_detectron2.py
--help``. The logic and its documentation: resnest_backbones/apps/detectron2_onnx_eval.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.detectron2_onnx_eval import main

if __name__ == "__main__":
    sys.exit(main())
