#!/usr/bin/env python
"""Export an mmdet / mmseg model to ONNX with mmdeploy (ONNX Runtime) and check it against PyTorch on an image.

    python tools/deploy_openmmlab.py configs/mmdeploy/mmdet/instance-seg_onnxruntime_static.py \
        configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py work_dirs/qs_coco/iter_1000.pth \
        data/synthetic_shapes/images/val/000001.png --work-dir work_dirs/qs_coco/onnx --device cpu

Arguments as mmdeploy's tools/deploy.py; writes WORK_DIR/end2end.onnx.
Logic: resnest_backbones/apps/openmmlab_deploy.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, any cwd
from resnest_backbones.apps.openmmlab_deploy import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
