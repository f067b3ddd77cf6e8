#!/usr/bin/env python
"""Train / evaluate ResNeSt detectors from detectron2 LazyConfig (Python) configs, as detectron2's own
tools/lazyconfig_train_net.py does (same arguments, same config fields).

    python tools/lazyconfig_train_net.py --config-file configs/detectron2/lazy/quickstart_mask_rcnn_s14_synthetic.py
    python tools/lazyconfig_train_net.py --num-gpus 8 \
        --config-file configs/detectron2/lazy/mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco.py
    python tools/lazyconfig_train_net.py --config-file <cfg> --eval-only train.init_checkpoint=<output>/model_final.pth
    python tools/lazyconfig_train_net.py --config-file <cfg> --resume     # continue from <output>/last_checkpoint

Overrides are `key=value` (LazyConfig.apply_overrides). Logic: resnest_backbones/apps/detectron2_lazy_train.py;
--num-gpus on a CPU-only machine: as tools/train_net.py (resnest_backbones/apps/detectron2_launch.py).
"""
import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

import sys

from resnest_backbones.apps.detectron2_launch import launch_tool
from resnest_backbones.apps.detectron2_lazy_train import main

if __name__ == "__main__":
    sys.exit(launch_tool(main))
