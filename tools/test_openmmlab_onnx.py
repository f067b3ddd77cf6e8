#!/usr/bin/env python
"""Evaluate an ONNX file made by tools/deploy_openmmlab.py with ONNX Runtime on the model config's test split, with
the config's own evaluator (mmdet's CocoMetric, mmseg's IoUMetric).

    python tools/test_openmmlab_onnx.py configs/mmdeploy/mmdet/instance-seg_onnxruntime_static.py \
        configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py work_dirs/qs_coco/onnx/end2end.onnx \
        --work-dir work_dirs/qs_coco/onnx

Logic: resnest_backbones/apps/openmmlab_onnx_eval.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, any cwd
from resnest_backbones.apps.openmmlab_onnx_eval import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
