# tests/test_faults.py: the mmdet quick start, tiny (ResNeSt-14 at a quarter width, no validation; the test
# passes 64-pixel images as --cfg-options), with the crash-safe checkpoint hook, mmengine-checkpoint resuming
# (SafeRunner) and the test-only fault injection (tests/fault_injection.py, importable through PYTHONPATH).
_base_ = '../../configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py'
custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.openmmlab.runner',
                               'resnest_backbones.apps.mmdet_visualize', 'resnest_backbones.openmmlab.checkpoint_hook',
                               'fault_injection'],
                      allow_failed_imports=False)
runner_type = 'SafeRunner'
randomness = dict(seed=0)

model = dict(
    backbone=dict(base_channels=16),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32), bbox_head=dict(in_channels=32, fc_out_channels=64),
                  mask_roi_extractor=dict(out_channels=32),
                  mask_head=dict(in_channels=32, conv_out_channels=32)))
train_cfg = dict(max_iters=7, val_interval=1000)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=3, max_keep_ckpts=1))
custom_hooks = [dict(type='FaultInjectionHook')]
