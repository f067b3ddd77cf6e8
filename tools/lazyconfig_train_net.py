#!/usr/bin/env python
"""Train / evaluate ResNeSt detectors from detectron2 LazyConfigs, as detectron2's tools/lazyconfig_train_net.py:
``python tools/lazyconfig_train_net.py --help``. The logic and its documentation:
resnest_backbones/apps/detectron2_lazy_train.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.detectron2_lazy_train import cli

if __name__ == "__main__":
    sys.exit(cli())
