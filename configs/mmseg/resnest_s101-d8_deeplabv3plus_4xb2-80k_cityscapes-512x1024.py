# DeepLabV3+ with a ResNeSt-101 backbone at output stride 8 (./_base_/resnest101-d8_syncbn.py), mmseg's
# recipe: Cityscapes (19 classes), 512x1024 crops, 80k iterations at batch 8 (4 GPUs x 2).
_base_ = ['mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb2-80k_cityscapes-512x1024.py',
          './_base_/resnest101-d8_syncbn.py']
# pretrained=None: drops the base's ResNet weights; the backbone's init_cfg loads ResNeSt's instead.
model = dict(pretrained=None, backbone={{_base_.resnest_backbone}})
