# Cascade Mask R-CNN, ResNeSt-50 FPN, COCO, the paper's recipe: SyncBN in the backbone and the heads,
# Shared4Conv1FC box heads in all three stages, multi-scale training (short side one of 640, 672, ..., 800), 1x.
_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
          './_base_/resnest50_fpn_syncbn-backbone+head_ms.py']
model = dict(data_preprocessor={{_base_.resnest_data_preprocessor}}, backbone={{_base_.resnest_backbone}},
             roi_head=dict(bbox_head={{_base_.resnest_cascade_bbox_heads}}, mask_head={{_base_.resnest_mask_head}}))
train_pipeline = {{_base_.resnest_train_pipeline_ms_choice}}
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
