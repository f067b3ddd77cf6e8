#!/usr/bin/env python
"""Whole detectors and segmentors in PyTorch, fused, ONNX Runtime and OpenVINO, ResNeSt-50 beside ResNet-50:
``python tools/benchmark_deploy.py --help``. The logic and its documentation:
resnest_backbones/apps/benchmark/deploy.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.benchmark.deploy import main

if __name__ == "__main__":
    sys.exit(main())
