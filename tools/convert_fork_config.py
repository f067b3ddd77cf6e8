#!/usr/bin/env python
"""Convert a detectron2-ResNeSt fork config to this plugin's keys: ``python tools/convert_fork_config.py --help``. The
logic and its documentation: resnest_backbones/apps/detectron2_fork_convert.py."""
import sys

import _checkout  # noqa: F401  (first: this checkout's package; OMP_WAIT_POLICY)

from resnest_backbones.apps.detectron2_fork_convert import main

if __name__ == "__main__":
    sys.exit(main())
