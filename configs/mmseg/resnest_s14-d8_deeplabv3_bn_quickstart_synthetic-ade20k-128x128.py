# Quick start on CPU: DeepLabV3 with a ResNeSt-14 backbone at output stride 8 (./_base_/resnest14-d8_deeplabv3_bn_
# quickstart.py) on the project's synthetic ADE20K-layout data (5 of ADE20K's classes, label 0 = other/ignored, read
# by mmseg's own ADE20KDataset with reduce_zero_label=True), evaluated with IoUMetric (mIoU), 128x128 images.
#
#   python tools/make_synthetic_segmentation.py --layout ade20k          # writes data/synthetic_ade20k
#   mim train mmseg configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py \
#       --work-dir work_dirs/qs_ade
#   mim test mmseg configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py \
#       --checkpoint work_dirs/qs_ade/iter_400.pth
#
# The data root is relative to the working directory (run from the repository root). Move it with the environment
# variable RESNEST_ADE20K_ROOT=/path/to/data, or --cfg-options train_dataloader.dataset.data_root=...
# val_dataloader.dataset.data_root=... test_dataloader.dataset.data_root=...
_base_ = ['mmseg::_base_/datasets/ade20k.py', './_base_/resnest14-d8_deeplabv3_bn_quickstart.py']

data_root = '{{$RESNEST_ADE20K_ROOT:data/synthetic_ade20k}}'
# A subset of ADE20KDataset's classes, spelled as mmseg spells them; mmseg maps labels to it by name.
metainfo = dict(classes=('wall', 'building', 'sky', 'floor', 'tree'))
image_size = (128, 128)  # the synthetic images, evaluated whole
crop_size = (64, 64)  # training crops: 8 of them per batch (../_base_/resnest14-d8_deeplabv3_bn_quickstart.py)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
# Within the 3-minute budget of a quiet 2-core machine (README: seconds per iteration there, start-up and evaluation).
train_cfg = dict(max_iters=400, val_interval=400)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# Batch 8: BN statistics over 8 crops (see the shared base). No worker processes (CPU quick start). Image and label
# folders: those of mmseg's dataset base.
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
