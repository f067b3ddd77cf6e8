# LazyConfig quick start: the yaml quick start (../quickstart_mask_rcnn_s14_synthetic.yaml) as a Python config.
# Mask R-CNN with a ResNeSt-14 FPN backbone trained FROM SCRATCH on the synthetic shapes dataset (made on first use
# under $DETECTRON2_DATASETS/synthetic_shapes, or synthetic.root), on CPU; COCO box/mask AP on the held-out split.
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/lazy/quickstart_mask_rcnn_s14_synthetic.py
# Two CPU processes: add --num-gpus 2 dataloader.train.total_batch_size=4 (2 images each, as the yaml's recipe).
import torch

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

from .common.coco_lsj import dataloader
from .common.mask_rcnn_fpn import model
from .common.train import optimizer, train

# Read by tools/lazyconfig_train_net.py: make (if absent) and register synthetic_shapes_{train,val} and the LVIS
# copies (synthetic_shapes_lvis_{train,val}); root "" means $DETECTRON2_DATASETS/synthetic_shapes.
synthetic = dict(root="", num_train=800, num_val=100, image_size=256, seed=0)

SIZE = 192  # the 256 px images are seen at 192 px: objects stay 22-75 px, at half the compute
CHANNELS = 64  # small FPN and heads: most of a CPU step should go to the backbone

# GroupNorm, as the yaml quick start (which says why): batch-independent, so no BN statistics over 2 images.
model.backbone.bottom_up.update(variant="resnest14", norm="GN", freeze_at=0, last_gamma=True)
model.backbone.out_channels = CHANNELS
model.proposal_generator.update(pre_nms_topk=(1000, 500), post_nms_topk=(300, 200), batch_size_per_image=128)
model.proposal_generator.head.in_channels = CHANNELS
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.roi_heads.update(num_classes=3, batch_size_per_image=64)
model.roi_heads.box_head.update(input_shape=ShapeSpec(channels=CHANNELS, height=7, width=7), fc_dims=[256, 256])
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_head.update(input_shape=ShapeSpec(channels=CHANNELS, height=14, width=14),
                                 conv_dims=[CHANNELS] * 3)

dataloader.train.dataset.names = "synthetic_shapes_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=[SIZE], max_size=SIZE, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True)]
dataloader.train.mapper.recompute_boxes = False
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = 1
dataloader.test.dataset.names = "synthetic_shapes_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=SIZE, max_size=SIZE)]
dataloader.test.num_workers = 1

train.update(output_dir="output/lazy_quickstart_mask_rcnn_s14_synthetic", device="cpu", max_iter=600, eval_period=0)
# A fixed seed (read by detectron2's default_setup): weights, sampling order and augmentation, not the dataset
# (synthetic.seed); train.seed=N trains another.
train.seed = 0
train.checkpointer.period = 300
# AdamW + cosine: from scratch, SGD at 0.02 learned far less in the same time.
optimizer._target_ = torch.optim.AdamW
del optimizer.momentum
optimizer.update(lr=1e-3, weight_decay=1e-4, betas=(0.9, 0.999))
lr_multiplier = L(WarmupParamScheduler)(scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
                                        warmup_length=50 / train.max_iter, warmup_factor=0.001)
