# Cascade Mask R-CNN: common/mask_rcnn_fpn.py with detectron2's CascadeROIHeads (three box stages at IoU 0.5, 0.6,
# 0.7, class-agnostic regression with the usual per-stage box weights).
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import CascadeROIHeads, FastRCNNConvFCHead, FastRCNNOutputLayers

from .mask_rcnn_fpn import model

for single_stage_key in ("box_head", "box_predictor", "proposal_matcher"):
    del model.roi_heads[single_stage_key]
model.roi_heads._target_ = CascadeROIHeads
model.roi_heads.box_heads = [
    L(FastRCNNConvFCHead)(input_shape=ShapeSpec(channels=256, height=7, width=7), conv_dims=[], fc_dims=[1024, 1024])
    for _ in range(3)]
model.roi_heads.box_predictors = [
    L(FastRCNNOutputLayers)(input_shape=ShapeSpec(channels=1024), test_score_thresh=0.05,
                            box2box_transform=L(Box2BoxTransform)(weights=(scale, scale, scale / 2, scale / 2)),
                            cls_agnostic_bbox_reg=True, num_classes="${...num_classes}")
    for scale in (10, 20, 30)]
model.roi_heads.proposal_matchers = [
    L(Matcher)(thresholds=[iou], labels=[0, 1], allow_low_quality_matches=False) for iou in (0.5, 0.6, 0.7)]
