#!/usr/bin/env python
"""Export a ResNeSt detectron2 detector to TorchScript (scripting or tracing) or ONNX (tracing) with detectron2's own
export paths, and check the written file against eager PyTorch on a sample image (as detectron2's
tools/deploy/export_model.py, for ResNeSt configs, yaml or LazyConfig).

    python tools/export_detectron2.py --format onnx --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml \
        --output output/export MODEL.WEIGHTS output/quickstart_mask_rcnn_s14_synthetic/model_final.pth
    python tools/export_detectron2.py --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml \
        --export-method scripting --output output/export MODEL.WEIGHTS output/quickstart_mask_rcnn_s14_synthetic/model_final.pth

Logic: resnest_backbones/apps/detectron2_export_tool.py (the command line), detectron2_export.py (TorchScript),
detectron2_onnx.py (ONNX); the ONNX file runs without torch through resnest_backbones/onnx_runner.py. See
docs/deploy.md.
"""
import sys

import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

from resnest_backbones.apps.detectron2_export_tool import main

if __name__ == "__main__":
    sys.exit(main())
