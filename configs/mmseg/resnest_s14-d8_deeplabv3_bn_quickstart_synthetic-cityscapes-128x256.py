# Quick start on CPU: DeepLabV3 with a ResNeSt-14 backbone at output stride 8 on the project's synthetic
# Cityscapes-layout data (5 of Cityscapes' classes as trainIds, 255 = ignore, read by mmseg's own
# CityscapesDataset), evaluated with IoUMetric (mIoU). Plain BN, 128x256 images, random initialisation.
#
#   python tools/make_synthetic_segmentation.py --layout cityscapes      # writes data/synthetic_cityscapes
#   mim train mmseg configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py \
#       --work-dir work_dirs/qs_cityscapes
#   mim test mmseg configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py \
#       --checkpoint work_dirs/qs_cityscapes/iter_200.pth
#
# Data root: RESNEST_CITYSCAPES_ROOT=/path/to/data, or --cfg-options *_dataloader.dataset.data_root=... (see the
# ADE20K quick start).
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)

data_root = '{{$RESNEST_CITYSCAPES_ROOT:data/synthetic_cityscapes}}'
# A subset of CityscapesDataset's classes; the synthetic data's trainIds 0..4 are these.
metainfo = dict(classes=('road', 'sidewalk', 'building', 'wall', 'fence'))
num_classes = 5
crop_size = (128, 256)
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
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# Batch 2: split attention, BN and DeepLabV3's image pooling need more than one sample in training.
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train')))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline,
                 data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val')))
test_dataloader = val_dataloader

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))

# CPU-friendly distributed settings (used only with --launcher pytorch); see the ADE20K quick start.
env_cfg = dict(dist_cfg=dict(backend='gloo'))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
