# DeepLabV3+ with a ResNeSt-101 backbone at output stride 8 ("-d8": stages 3 and 4 dilated by 2 and 4 instead of
# strided), Cityscapes (19 classes), 512x1024 crops, 80k iterations at batch 8 (4 GPUs x 2), SyncBN, initialised
# from the official ImageNet resnest101 weights (downloaded once).
# dilated_layout='official' is the official code's layout used by the paper's segmentation models; use 'mmseg'
# to load checkpoints trained with mmseg's own ResNeSt (contract_dilation=True).
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['resnest_backbones.mmseg'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,  # the base's ResNet weights; the backbone's init_cfg below loads ResNeSt's instead
    backbone=dict(
        _delete_=True,
        type='ResNeStBackbone',
        variant='resnest101',
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        dilated_layout='official',
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='resnest://resnest101')))
