# What the two CPU quick starts share: DeepLabV3 with a ResNeSt-14 backbone at output stride 8 (the smallest
# published variant), plain BN, random initialisation (no download needed), heads narrowed for a CPU, 5 classes,
# SGD with mmseg's poly schedule over train_cfg.max_iters. Each quick start lists mmseg's own dataset base next to
# this file and adds the project's synthetic data, its crop size, its dataloaders and its iteration budget (mmengine
# refuses a key that two bases of one list both define, so the dataloaders cannot be shared here).
#
# Batches of 8 crops of a quarter of an image each, not 2 whole images (the same pixels per iteration): BN normalises
# with the statistics of the batch in training. In these scenes one class fills most of each image and a class is
# told apart by its colour, so the mean colour of 2 images is mostly that of their 2 dominant classes; normalising
# by it removed the cue. Trained so, a model's training forward (batch statistics) and its evaluated forward (running
# statistics) were different functions: the loss stalled near 1.0, and mIoU ranged 45-91 from seed to seed. With 8
# crops the batch statistics approach the running ones (tools/measure_quickstarts.py measures the spread).
_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py', 'mmseg::_base_/default_runtime.py',
          'mmseg::_base_/schedules/schedule_80k.py']
custom_imports = dict(imports=['resnest_backbones.mmseg', 'resnest_backbones.openmmlab.runner',
                               'resnest_backbones.apps.mmseg_visualize'],
                      allow_failed_imports=False)
# Stack fixes, opt-in (docs/openmmlab.md): weights-only checkpoint loading, CPU-only --launcher pytorch.
runner_type = 'SafeRunner'
# ExpectedTimeHook: logs the expected time of the whole run on this machine after its first 20 iterations.
custom_hooks = [dict(type='WeightsOnlyCheckpointHook'), dict(type='ExpectedTimeHook')]
# A fixed seed: the documented command reproduces the documented seed-0 run (within CPU nondeterminism);
# --cfg-options randomness.seed=N trains another (tools/measure_quickstarts.py varies it).
randomness = dict(seed=0)

num_classes = 5
norm_cfg = dict(type='BN', requires_grad=True)  # one process on a CPU: no SyncBN
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ResNeStBackbone',
        variant='resnest14',
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        dilated_layout='official',  # the official code's layout (without it: mmseg's)
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=None),
    # Narrow heads for a CPU: the ASPP head's 512 channels (on a 2048-channel input) cost far more than the
    # ResNeSt-14 backbone at this size.
    decode_head=dict(channels=128, num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(channels=64, num_classes=num_classes, norm_cfg=norm_cfg))

# mmengine validates and (save_last) checkpoints after the last iteration, and a scheduler without `end` runs to
# train_cfg.max_iters, so a quick start (or --cfg-options train_cfg.max_iters=N train_cfg.val_interval=N) sets the
# budget in one place.
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, by_epoch=False)]
# Drawings of every 3rd validation image (4 of the 12): ground truth (left) beside the prediction (right) under a
# legend (the two sides, the class colours), in <work_dir>/<time>/vis_data/vis_image/ (mim test too, or into
# --show-dir).
# AtomicCheckpointHook: mmengine's CheckpointHook, saving so that a run killed while saving can resume.
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=-1, max_keep_ckpts=1),
                     visualization=dict(draw=True, interval=3))
visualizer = dict(type='LegendSegLocalVisualizer')  # mmseg's SegLocalVisualizer plus the legend

# CPU-friendly distributed settings (used only with --launcher pytorch): gloo instead of NCCL, and DDP without
# device ids (CPU modules take none; with one GPU per process DDP finds the device itself).
env_cfg = dict(dist_cfg=dict(backend='gloo'))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
