# Quick start on CPU: Mask R-CNN with a ResNeSt-14 FPN backbone (the smallest published variant, so that it trains
# in minutes on a CPU) on the project's synthetic shapes dataset (COCO json, three classes), evaluated with
# CocoMetric (bbox and segm). Plain BN (no SyncBN), 128-pixel images, a short iteration-based schedule, random
# backbone initialisation (no download needed).
#
#   python tools/make_synthetic_dataset.py data/synthetic_shapes --num-train 200 --num-val 200 \
#       --image-size 128   # from a checkout
#   mim train mmdet configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py --work-dir work_dirs/qs_coco
#   mim test mmdet configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py \
#       --checkpoint work_dirs/qs_coco/iter_1000.pth
#
# The data root is relative to the working directory (run from the repository root). Move it with the environment
# variable RESNEST_SHAPES_ROOT=/path/to/shapes/ (trailing slash), or override each key with --cfg-options
# (train_dataloader.dataset.data_root, val_dataloader.dataset.data_root, test_dataloader.dataset.data_root,
# val_evaluator.ann_file, test_evaluator.ann_file). Other variants: --cfg-options model.backbone.variant=resnest50.
# ImageNet initialisation (with internet): a child config setting
# model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='resnest://resnest14'))).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.openmmlab.runner',
                               'resnest_backbones.apps.mmdet_visualize'],
                      allow_failed_imports=False)
# Stack fixes, opt-in (docs/openmmlab.md): weights-only checkpoint loading, CPU-only --launcher pytorch.
runner_type = 'SafeRunner'
# ExpectedTimeHook: logs the expected time of the whole run on this machine after its first 20 iterations.
custom_hooks = [dict(type='WeightsOnlyCheckpointHook'), dict(type='ExpectedTimeHook')]
# A fixed seed: the documented command reproduces the documented seed-0 run (within CPU nondeterminism);
# --cfg-options randomness.seed=N trains another (tools/measure_quickstarts.py varies it).
randomness = dict(seed=0)

data_root = '{{$RESNEST_SHAPES_ROOT:data/synthetic_shapes/}}'
# Class colours as in the detectron2 quick start's drawings (detectron2's colormap).
metainfo = dict(classes=('circle', 'square', 'triangle'), palette=[(0, 114, 189), (217, 83, 25), (237, 177, 32)])
# The 5-minute budget on a quiet 2-core machine: about 4.4 min in all (0.25 s per iteration measured there, plus
# about 12 s to start and evaluate).
max_iters = 1000
image_scale = (128, 128)

model = dict(
    # RGB with the ImageNet statistics (as the paper configs and the detectron2 quick start).
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='ResNeStBackbone',
        variant='resnest14',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,  # from scratch: train everything
        # momentum 0.01: the running statistics used in evaluation average the last ~100 iterations, not ~10 (20
        # images); from scratch, those few images' statistics moved a seed's bbox mAP by 5 points.
        norm_cfg=dict(type='BN', momentum=0.01, requires_grad=True),
        norm_eval=False,
        last_gamma=True,  # zero-init each block's last BN: blocks start as identities, which helps from scratch
        init_cfg=None),
    # Small heads and few RoIs (as the detectron2 quick start): mmcv's CPU RoIAlign is single-threaded, so with
    # the COCO defaults (1000 proposals, 512 sampled RoIs, 256-channel heads) it dominated a CPU step.
    neck=dict(out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64, num_classes=3)),
    train_cfg=dict(rpn=dict(sampler=dict(num=128)), rpn_proposal=dict(nms_pre=1000, max_per_img=300),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200), rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# Batch 2: split attention and BN need more than one sample in training. No worker processes (CPU quick start).
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='images/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
# The held-out split as the command above makes it: 200 images. On 50, one model's bbox mAP varied between disjoint
# 50-image subsets with a standard deviation of 3-4.5 points, more than the seeds' spread the quick start reports.
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
# AdamW with a cosine schedule: from scratch on CPU it learns far faster than SGD at lr 0.02.
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=1e-4))
# The cosine schedule and the checkpoint (saved after the last iteration) follow train_cfg.max_iters, so
# --cfg-options train_cfg.max_iters=N train_cfg.val_interval=N changes the budget in one place.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, eta_min=1e-5),
]
# Drawings of every 20th validation batch's first image: ground truth (left) beside the predictions with score >= 0.5
# (right) under a legend (the two sides, the threshold, the class colours), each panel at least 512 px wide, in
# <work_dir>/<time>/vis_data/vis_image/ (mim test draws every test image there, or into --show-dir).
# AtomicCheckpointHook: mmengine's CheckpointHook, saving so that a run killed while saving can resume.
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=-1, max_keep_ckpts=1),
                     visualization=dict(draw=True, interval=20, score_thr=0.5))
visualizer = dict(type='LegendDetLocalVisualizer')  # mmdet's DetLocalVisualizer plus the legend
log_processor = dict(by_epoch=False)

# CPU-friendly distributed settings (used only with --launcher pytorch): gloo instead of NCCL, and DDP without
# device ids (CPU modules take none; with one GPU per process DDP finds the device itself).
env_cfg = dict(dist_cfg=dict(backend='gloo'))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
