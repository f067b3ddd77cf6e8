#!/usr/bin/env python
"""Train / evaluate ResNeSt detectors with detectron2, as detectron2's own tools/train_net.py does.

    python tools/train_net.py --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml
    python tools/train_net.py --config-file configs/detectron2/mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml \
        --num-gpus 8
    python tools/train_net.py --config-file <cfg> --eval-only MODEL.WEIGHTS <output>/model_final.pth
    python tools/train_net.py --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml --num-gpus 2

Logic: resnest_backbones/apps/detectron2_train.py. Works from any directory (shipped configs are found by name).
``--num-gpus N`` without CUDA starts N CPU processes (gloo): detectron2's own launch where it can, else
resnest_backbones/apps/detectron2_launch.py (detectron2 v0.6 asserts CUDA); with CUDA it is detectron2's launch.
"""
import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

import sys

from resnest_backbones.apps.detectron2_launch import launch_tool
from resnest_backbones.apps.detectron2_train import main

if __name__ == "__main__":
    sys.exit(launch_tool(main))
