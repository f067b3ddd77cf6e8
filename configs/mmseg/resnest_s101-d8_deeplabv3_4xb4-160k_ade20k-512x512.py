# DeepLabV3 with a ResNeSt-101 backbone at output stride 8 (./_base_/resnest101-d8_syncbn.py), mmseg's
# recipe: ADE20K (150 classes), 512x512 crops, 160k iterations at batch 16 (4 GPUs x 4).
_base_ = ['mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-160k_ade20k-512x512.py',
          './_base_/resnest101-d8_syncbn.py']
# pretrained=None: drops the base's ResNet weights; the backbone's init_cfg loads ResNeSt's instead.
model = dict(pretrained=None, backbone={{_base_.resnest_backbone}})
