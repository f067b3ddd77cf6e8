# Quick start on CPU: the COCO quick start on the LVIS v1 copy of the synthetic shapes (mmdet's LVISV1Dataset and
# LVISMetric, bbox and segm). Same data root and overrides (RESNEST_SHAPES_ROOT); see the COCO quick start.
_base_ = './mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py'
data_root = '{{$RESNEST_SHAPES_ROOT:data/synthetic_shapes/}}'

train_dataloader = dict(dataset=dict(type='LVISV1Dataset', ann_file='annotations/lvis_v1_train.json'))
val_dataloader = dict(dataset=dict(type='LVISV1Dataset', ann_file='annotations/lvis_v1_val.json'))
test_dataloader = val_dataloader
# mmdet's LVISMetric, evaluating on numpy >= 1.24 (the lvis package uses np.float; resnest_backbones.openmmlab.lvis).
custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.openmmlab.runner',
                               'resnest_backbones.apps.mmdet_visualize', 'resnest_backbones.openmmlab.lvis'],
                      allow_failed_imports=False)
val_evaluator = dict(_delete_=True, type='NumpyCompatLVISMetric', ann_file=data_root + 'annotations/lvis_v1_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator
