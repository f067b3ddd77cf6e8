# Mask R-CNN, ResNeSt-50 FPN, LVIS v1: mmdet's LVIS recipe (repeat-factor sampling with threshold 1e-3, 1203
# classes, up to 300 detections per image, LVISMetric, multi-scale training with the short side one of 640, 672,
# ..., 800, 1x schedule) with the paper's backbone and head settings (SyncBN, Shared4Conv1FC box head).
_base_ = ['mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py',
          './_base_/resnest50_fpn_syncbn-backbone+head_ms.py']
model = dict(data_preprocessor={{_base_.resnest_data_preprocessor}}, backbone={{_base_.resnest_backbone}},
             roi_head=dict(bbox_head={{_base_.resnest_bbox_head}}, mask_head={{_base_.resnest_mask_head}}))
# mmdet's LVISMetric, evaluating on numpy >= 1.24 (the lvis package uses np.float; resnest_backbones.openmmlab.lvis).
custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.openmmlab.runner',
                               'resnest_backbones.openmmlab.lvis'], allow_failed_imports=False)
val_evaluator = dict(type='NumpyCompatLVISMetric')
test_evaluator = val_evaluator
