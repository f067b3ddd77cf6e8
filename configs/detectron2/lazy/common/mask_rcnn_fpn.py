# Mask R-CNN with a ResNeSt-50 FPN backbone as a detectron2 LazyConfig `model` (same defaults as detectron2's yaml
# R-CNN FPN: 256-channel FPN with max-pooled P6, 1-conv RPN head, 2fc box head, 4-conv mask head, 80 classes).
# ResNeSt's published weights expect RGB in 0-255 normalised with the ImageNet mean/std.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import (FastRCNNConvFCHead, FastRCNNOutputLayers, MaskRCNNConvUpsampleHead,
                                           StandardROIHeads)

from resnest_backbones.detectron2 import resnest_backbone

LEVELS = ["p2", "p3", "p4", "p5"]
SCALES = (1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32)

model = L(GeneralizedRCNN)(
    backbone=L(FPN)(
        bottom_up=L(resnest_backbone)(variant="resnest50", norm="FrozenBN", freeze_at=2,
                                      out_features=["res2", "res3", "res4", "res5"]),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        top_block=L(LastLevelMaxPool)(),
    ),
    proposal_generator=L(RPN)(
        in_features=LEVELS + ["p6"],
        head=L(StandardRPNHead)(in_channels=256, num_anchors=3),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32], [64], [128], [256], [512]], aspect_ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64],
            offset=0.0),
        anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),  # (training, test), per FPN level
        post_nms_topk=(1000, 1000),
        nms_thresh=0.7,
    ),
    roi_heads=L(StandardROIHeads)(
        num_classes=80,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
        box_in_features=LEVELS,
        box_pooler=L(ROIPooler)(output_size=7, scales=SCALES, sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_head=L(FastRCNNConvFCHead)(input_shape=ShapeSpec(channels=256, height=7, width=7), conv_dims=[],
                                       fc_dims=[1024, 1024]),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=ShapeSpec(channels=1024), test_score_thresh=0.05,
            box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)), num_classes="${..num_classes}"),
        mask_in_features=LEVELS,
        mask_pooler=L(ROIPooler)(output_size=14, scales=SCALES, sampling_ratio=0, pooler_type="ROIAlignV2"),
        mask_head=L(MaskRCNNConvUpsampleHead)(input_shape=ShapeSpec(channels=256, width=14, height=14),
                                              num_classes="${..num_classes}", conv_dims=[256, 256, 256, 256, 256]),
    ),
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
)
