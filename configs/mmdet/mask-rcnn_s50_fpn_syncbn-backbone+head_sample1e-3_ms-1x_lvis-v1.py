# Mask R-CNN, ResNeSt-50 FPN, LVIS v1: mmdet's LVIS recipe (repeat-factor sampling with threshold 1e-3, 1203
# classes, up to 300 detections per image, LVISMetric) with the paper's backbone and head settings (SyncBN,
# Shared4Conv1FC box head) and multi-scale training (short side one of 640, 672, ..., 800), 1x schedule.
_base_ = 'mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py'
custom_imports = dict(imports=['resnest_backbones.mmdet'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(mean=[123.68, 116.779, 103.939], std=[58.393, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='ResNeStBackbone',
        variant='resnest50',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='resnest://resnest50')),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))
