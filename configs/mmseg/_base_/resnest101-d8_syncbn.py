# The ResNeSt-50 output-stride-8 backbone (see there) with the deeper ResNeSt-101 and its official ImageNet weights.
_base_ = './resnest50-d8_syncbn.py'
resnest_backbone = dict(variant='resnest101', init_cfg=dict(checkpoint='resnest://resnest101'))
