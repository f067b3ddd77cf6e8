# Cascade Mask R-CNN, ResNeSt-50 FPN, COCO 2017, new_baselines recipe (common/new_baselines.py), 4conv1fc SyncBN
# box head in each of the three stages.
from .common.cascade_mask_rcnn_fpn import model
from .common.new_baselines import dataloader, lr_multiplier, optimizer, syncbn_4conv1fc, train

syncbn_4conv1fc(model)
train.output_dir = "./output/cascade_mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco"
