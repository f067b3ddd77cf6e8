#!/usr/bin/env python
"""Export a ResNeSt detectron2 detector to TorchScript with detectron2's scripting or tracing, and check the written
file against eager PyTorch on a sample image (as detectron2's tools/deploy/export_model.py, for ResNeSt configs).

    python tools/export_detectron2.py --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml \
        --export-method scripting --output output/export MODEL.WEIGHTS output/quickstart_mask_rcnn_s14_synthetic/model_final.pth

Logic: resnest_backbones/apps/detectron2_export.py (see its docstring for the two formats).
"""
import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

import sys

from resnest_backbones.apps.detectron2_export import main

if __name__ == "__main__":
    sys.exit(main())
