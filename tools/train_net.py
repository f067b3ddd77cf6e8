#!/usr/bin/env python
"""Train / evaluate ResNeSt detectors with detectron2, as detectron2's tools/train_net.py: ``python tools/train_net.py
--help``. The logic and its documentation: resnest_backbones/apps/detectron2_train.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.detectron2_train import cli

if __name__ == "__main__":
    sys.exit(cli())
