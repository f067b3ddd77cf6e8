# Quick start on CPU: DeepLabV3 with a ResNeSt-14 backbone at output stride 8 (./_base_/resnest14-d8_deeplabv3_bn_
# quickstart.py) on the project's synthetic Cityscapes-layout data (5 of Cityscapes' classes as trainIds,
# 255 = ignore, read by mmseg's own CityscapesDataset), evaluated with IoUMetric (mIoU), 128x256 images.
#
#   python tools/make_synthetic_segmentation.py --layout cityscapes      # writes data/synthetic_cityscapes
#   mim train mmseg configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py \
#       --work-dir work_dirs/qs_cityscapes
#   mim test mmseg configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py \
#       --checkpoint work_dirs/qs_cityscapes/iter_260.pth
#
# Data root: RESNEST_CITYSCAPES_ROOT=/path/to/data, or --cfg-options *_dataloader.dataset.data_root=... (see the
# ADE20K quick start).
_base_ = ['mmseg::_base_/datasets/cityscapes.py', './_base_/resnest14-d8_deeplabv3_bn_quickstart.py']

data_root = '{{$RESNEST_CITYSCAPES_ROOT:data/synthetic_cityscapes}}'
# A subset of CityscapesDataset's classes; the synthetic data's trainIds 0..4 are these.
metainfo = dict(classes=('road', 'sidewalk', 'building', 'wall', 'fence'))
image_size = (256, 128)  # the synthetic images (width, height: mmcv's scale), evaluated whole
crop_size = (64, 128)  # training crops (height, width): 8 of them per batch (../_base_/resnest14-d8_deeplabv3_bn_...)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
# Within the 3-minute budget of a quiet 2-core machine (README: seconds per iteration there, start-up and evaluation).
train_cfg = dict(max_iters=260, val_interval=260)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# Batch 8: BN statistics over 8 crops (see the shared base). No worker processes (CPU quick start). Image and label
# folders: those of mmseg's dataset base.
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
