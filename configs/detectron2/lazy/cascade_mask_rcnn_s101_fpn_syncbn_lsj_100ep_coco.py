# Cascade Mask R-CNN, ResNeSt-101 FPN, COCO 2017, new_baselines recipe: the S50 config with ResNeSt-101.
from .cascade_mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.variant = "resnest101"
train.output_dir = "./output/cascade_mask_rcnn_s101_fpn_syncbn_lsj_100ep_coco"
