# The recipe of detectron2's new_baselines ("Rethinking ImageNet Pre-training" / "Simple Copy-Paste" style) for
# ResNeSt: trained from scratch, SyncBN everywhere, large-scale jitter at 1024, batch 64, 100 epochs, AMP. Import
# the loaders and solver from here and pass your model through syncbn_4conv1fc().
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import FastRCNNConvFCHead
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from .coco_lsj import dataloader
from .train import optimizer, train

train.init_checkpoint = ""  # from scratch: SyncBN and the long schedule make ImageNet weights unnecessary
train.amp.enabled = True
train.ddp.fp16_compression = True
optimizer.lr = 0.1
optimizer.weight_decay = 4e-5
# 100 epochs of COCO train2017 (118k images) at 64 images per iteration; lr x0.1 at 88.9% and 96.3%.
train.max_iter = 184375
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[163889, 177546],
                                         num_updates=train.max_iter),
    warmup_length=500 / train.max_iter,
    warmup_factor=0.067,
)


def syncbn_4conv1fc(model):
    """SyncBN in backbone and FPN; 4conv1fc box head(s) and the mask head with naiveSyncBN_N (NaiveSyncBatchNorm,
    stats_mode N: heads can get empty batches, which torch's SyncBatchNorm rejects); a 2-conv RPN head. Every box
    head of a Cascade R-CNN gets the same. Modifies ``model`` in place and returns it."""
    model.backbone.bottom_up.freeze_at = 0
    model.backbone.bottom_up.norm = "SyncBN"
    model.backbone.norm = "SyncBN"
    model.proposal_generator.head.conv_dims = [-1, -1]
    roi_heads = model.roi_heads
    heads = roi_heads.box_heads if "box_heads" in roi_heads else [roi_heads.box_head]
    for head in heads:
        head.update(conv_dims=[256, 256, 256, 256], fc_dims=[1024], conv_norm="naiveSyncBN_N")
    roi_heads.mask_head.conv_norm = "naiveSyncBN_N"
    return model
