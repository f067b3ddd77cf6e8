# Mask R-CNN, ResNeSt-101 FPN, COCO 2017, new_baselines recipe: mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco.py with the
# ResNeSt-101 architecture.
from .mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.variant = "resnest101"
train.output_dir = "./output/mask_rcnn_s101_fpn_syncbn_lsj_100ep_coco"
