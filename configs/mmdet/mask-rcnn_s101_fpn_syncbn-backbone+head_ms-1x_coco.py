# Mask R-CNN, ResNeSt-101 FPN: the S50 recipe with the deeper backbone and its official ImageNet weights.
_base_ = './mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py'
model = dict(backbone=dict(variant='resnest101',
                           init_cfg=dict(type='Pretrained', checkpoint='resnest://resnest101')))
