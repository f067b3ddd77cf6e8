#!/usr/bin/env python
"""Evaluate an ONNX detector (tools/export_detectron2.py --format onnx) on the config's held-out split with the
config's own evaluator (COCOEvaluator, ...), through the torch-free runner, beside the PyTorch model when its weights
are given; fails when an AP differs by more than --max-ap-difference (0.3 points).

    python tools/eval_onnx_detectron2.py --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml \
        --onnx output/export/model.onnx MODEL.WEIGHTS output/quickstart_mask_rcnn_s14_synthetic/model_final.pth

Logic: resnest_backbones/apps/detectron2_onnx_eval.py. See docs/deploy.md.
"""
import sys

import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

from resnest_backbones.apps.detectron2_onnx_eval import main

if __name__ == "__main__":
    sys.exit(main())
