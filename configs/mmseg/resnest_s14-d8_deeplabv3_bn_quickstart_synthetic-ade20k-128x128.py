# Quick start on CPU: DeepLabV3 with a ResNeSt-14 backbone at output stride 8 on the project's synthetic
# ADE20K-layout data (5 of ADE20K's classes, label 0 = other/ignored, read by mmseg's own ADE20KDataset with
# reduce_zero_label=True), evaluated with IoUMetric (mIoU). Plain BN, 128x128 images, a short iteration-based
# schedule, random backbone initialisation (no download needed).
#
#   python tools/make_synthetic_segmentation.py --layout ade20k          # writes data/synthetic_ade20k
#   mim train mmseg configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py \
#       --work-dir work_dirs/qs_ade
#   mim test mmseg configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py \
#       --checkpoint work_dirs/qs_ade/iter_200.pth
#
# The data root is relative to the working directory (run from the repository root). Move it with the environment
# variable RESNEST_ADE20K_ROOT=/path/to/data, or --cfg-options train_dataloader.dataset.data_root=...
# val_dataloader.dataset.data_root=... test_dataloader.dataset.data_root=...
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)

data_root = '{{$RESNEST_ADE20K_ROOT:data/synthetic_ade20k}}'
# A subset of ADE20KDataset's classes, spelled as mmseg spells them; mmseg maps labels to it by name.
metainfo = dict(classes=('wall', 'building', 'sky', 'floor', 'tree'))
num_classes = 5
crop_size = (128, 128)
max_iters = 200
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='ResNeStBackbone',
        variant='resnest14',
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=None),
    # Narrow heads for a CPU: the ASPP head's 512 channels (on a 2048-channel input) cost far more than the
    # ResNeSt-14 backbone at this size.
    decode_head=dict(channels=128, num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(channels=64, num_classes=num_classes, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# Batch 2: split attention, BN and DeepLabV3's image pooling need more than one sample in training.
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))

# CPU-friendly distributed settings (used only with --launcher pytorch): gloo instead of NCCL, and DDP without
# device ids (CPU modules take none; with one GPU per process DDP finds the device itself).
env_cfg = dict(dist_cfg=dict(backend='gloo'))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
