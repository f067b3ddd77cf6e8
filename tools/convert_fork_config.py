#!/usr/bin/env python
"""Write a detectron2-ResNeSt fork yaml as a complete native resnest_backbones config (and optionally its weights in
native names), checked by building the model and loading the weights. Not needed to run fork models:
tools/train_net.py reads the fork's yaml and checkpoints directly.

    python tools/convert_fork_config.py <fork>/configs/COCO-InstanceSegmentation/mask_rcnn_ResNeSt_50_FPN_syncBN_1x.yaml \
        mask_rcnn_s50_native.yaml --weights mask_rcnn_ResNeSt_50_FPN_syncBN_1x-f442d863.pth mask_rcnn_s50_native.pth

Logic: resnest_backbones/apps/detectron2_fork_convert.py.
"""
import sys

import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

from resnest_backbones.apps.detectron2_fork_convert import main

if __name__ == "__main__":
    sys.exit(main())
