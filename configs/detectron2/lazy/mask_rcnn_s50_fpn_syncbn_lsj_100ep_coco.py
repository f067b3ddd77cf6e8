# Mask R-CNN, ResNeSt-50 FPN, COCO 2017, detectron2's new_baselines recipe (common/new_baselines.py: from scratch,
# SyncBN, large-scale jitter, 100 epochs at batch 64 on GPUs).
#   python tools/lazyconfig_train_net.py --num-gpus 8 \
#       --config-file configs/detectron2/lazy/mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco.py
from .common.mask_rcnn_fpn import model
from .common.new_baselines import dataloader, lr_multiplier, optimizer, syncbn_4conv1fc, train

syncbn_4conv1fc(model)
train.output_dir = "./output/mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco"
