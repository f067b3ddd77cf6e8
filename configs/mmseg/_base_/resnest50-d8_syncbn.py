# A ResNeSt-50 backbone at output stride 8 ("-d8": stages 3 and 4 dilated by 2 and 4 instead of strided), SyncBN,
# initialised from the official ImageNet weights (downloaded once): the backbone of the S50 paper configs.
#
# A paper config lists this file next to one of mmseg's own segmentor configs in `_base_`. mmengine refuses a key
# that two bases of one list both define, and mmseg's bases define `model` and `norm_cfg`, so this file shares the
# backbone under a name of its own, `resnest_backbone`, which the configs put in place with
# backbone={{_base_.resnest_backbone}}.
custom_imports = dict(imports=['resnest_backbones.mmseg', 'resnest_backbones.openmmlab.runner'],
                      allow_failed_imports=False)
# Stack fixes, opt-in (docs/openmmlab.md): weights-only checkpoint loading, CPU-only --launcher pytorch.
runner_type = 'SafeRunner'
custom_hooks = [dict(type='WeightsOnlyCheckpointHook')]

resnest_backbone = dict(
    _delete_=True,  # drop the base config's ResNet arguments
    type='ResNeStBackbone',
    variant='resnest50',
    out_indices=(0, 1, 2, 3),
    strides=(1, 2, 1, 1),
    dilations=(1, 1, 2, 4),
    # The official code's layout, used by the paper's segmentation models; 'mmseg' loads checkpoints trained with
    # mmseg's own ResNeSt (contract_dilation=True).
    dilated_layout='official',
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=dict(type='Pretrained', checkpoint='resnest://resnest50'))
