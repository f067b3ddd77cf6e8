#!/usr/bin/env python
"""Benchmark ResNeSt-50 (ours) against timm, mmdet and torchvision ResNet-50: see
resnest_backbones/apps/benchmark/peers.py (``python tools/benchmark.py --help``)."""
import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

from resnest_backbones.apps.benchmark.peers import main

if __name__ == "__main__":
    main()
