# The paper's detection recipe for a ResNeSt-50 FPN, shared by the S50 paper configs (the S101 ones inherit from
# those): SyncBN in the backbone and in the heads, a Shared4Conv1FC box head, multi-scale training, the official
# ImageNet weights (downloaded once).
#
# A paper config lists this file next to one of mmdet's own detector configs in `_base_`. mmengine refuses a key
# that two bases of one list both define, and mmdet's bases define `model`, the pipelines and the dataloaders, so
# this file shares those pieces under names of its own (resnest_*), which the configs put in place with
# {{_base_.resnest_*}}.
custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.openmmlab.runner'],
                      allow_failed_imports=False)
# Stack fixes, opt-in (docs/openmmlab.md): weights-only checkpoint loading, CPU-only --launcher pytorch.
runner_type = 'SafeRunner'
custom_hooks = [dict(type='WeightsOnlyCheckpointHook')]

resnest_norm_cfg = dict(type='SyncBN', requires_grad=True)
# RGB input normalised with the ImageNet statistics the official weights were trained with (variants.IMAGENET_MEAN
# and IMAGENET_STD x 255), as in this project's detectron2 configs. OpenMMLab's own ResNeSt configs use a mean of
# 123.68, 116.779, 103.939, which differs in G and B by up to 0.5.
resnest_data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
resnest_backbone = dict(
    _delete_=True,  # drop the base config's ResNet arguments
    type='ResNeStBackbone',
    variant='resnest50',
    out_indices=(0, 1, 2, 3),
    frozen_stages=1,
    norm_cfg=resnest_norm_cfg,
    norm_eval=False,
    init_cfg=dict(type='Pretrained', checkpoint='resnest://resnest50'))

# Merged into the base config's box head (it keeps that head's classes, coder and losses).
resnest_bbox_head = dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=resnest_norm_cfg)
# Cascade R-CNN: the same head in all three stages, which differ only in their regression target scaling.
resnest_cascade_bbox_heads = [
    dict(type='Shared4Conv1FCBBoxHead', in_channels=256, conv_out_channels=256, fc_out_channels=1024,
         norm_cfg=resnest_norm_cfg, roi_feat_size=7, num_classes=80, reg_class_agnostic=True,
         bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
         loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
         loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
    for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])]
resnest_mask_head = dict(norm_cfg=resnest_norm_cfg)

# Multi-scale training: box detectors draw the short side from [640, 800], mask detectors pick one of 640:32:800.
resnest_train_pipeline_ms_range = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=[(1333, 640), (1333, 800)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
resnest_train_pipeline_ms_choice = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='RandomChoiceResize', scales=[(1333, short) for short in range(640, 801, 32)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
