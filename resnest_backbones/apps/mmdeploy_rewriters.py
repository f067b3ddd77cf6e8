"""mmdeploy rewriters for the ONNX Runtime backend, registered with mmdeploy's own registries on import.

Imported only by the OpenMMLab deploy tools (``resnest_backbones.apps.openmmlab_deploy``), never by the adapters.
A rewriter registered for ``backend='onnxruntime'`` takes precedence over mmdeploy's ``'default'`` one for that
backend, and only inside mmdeploy's ``RewriterContext`` (the export); outside it nothing changes. They apply to any
mmdet model exported in the process, not only ResNeSt ones.

- ``mmcv.ops.roi_align``: mmdeploy 1.3.1's symbolic imports ``torch.onnx.symbolic_opset9._cast_Long``, which
  torch 2.x no longer has (``ImportError`` at export). Ours emits the standard ONNX ``RoiAlign`` (what mmdeploy
  emits for ONNX Runtime too), with ``coordinate_transformation_mode='half_pixel'`` for ``aligned=True`` (opset
  16), so ONNX Runtime runs it without mmdeploy's custom-ops library.
- ``RPNHead.predict_by_feat`` and ``BBoxHead.predict_by_feat``: mmdeploy's versions change what the detector
  computes: its RPN runs one NMS over all FPN levels with a 0.05 score threshold and appends a zero box to the
  proposals (mmdet: NMS per level, no threshold); its R-CNN head gives every class the box regressed for the
  best-scoring class. Ours compute mmdet's post-processing (per-level RPN NMS, class-specific boxes, the model's
  ``test_cfg``), so the ONNX model detects what the PyTorch model detects (tests compare them per image). They
  export one image per call (mmdet's post-processing is per image).
- ``F.adaptive_avg_pool2d`` (PSPNet's pyramid pooling): mmdeploy's version replaces it by an average pool whose
  kernel is the export size divided by the output size, which differs from adaptive pooling when the size is no
  multiple of the output size, and at any other size of a dynamic graph (measured: 10-20% off). Ours computes each
  window's mean from cumulative sums, with the windows computed from the input size.
- ``CascadeRoIHead.predict_mask``: mmdeploy's version averages the stages' mask logits and applies the sigmoid
  after; mmdet averages the stages' probabilities (measured: mask IoU 0.67-0.84 against PyTorch). Ours averages
  the probabilities.
- ``TwoStageDetector.forward``: mmdeploy's version takes the image size from the input tensor, which the data
  preprocessor has padded to ``pad_size_divisor``: boxes are then clipped to the padding, not to the image (mmdet
  clips to the image). Ours takes the image unpadded and pads it inside the graph, as the data preprocessor does;
  the backend model's preprocessor then pads nothing (``unpadded_preprocessor``). A padded input still works (the
  graph's padding is then empty), with mmdeploy's clipping.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdeploy.codebase.mmdet.deploy import get_post_processing_params
from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER
from mmdeploy.mmcv.ops.nms import ONNXNMSop
from mmdeploy.utils import get_ir_config, is_dynamic_shape
from mmdet.structures.bbox import get_box_tensor
from mmengine.config import ConfigDict
from torch import Tensor
from torch.nn.modules.utils import _pair

BACKEND = "onnxruntime"
MIN_ALIGNED_OPSET = 16  # ONNX RoiAlign's coordinate_transformation_mode (aligned=True) exists from opset 16
_INT64 = 7  # onnx.TensorProto.INT64


@SYMBOLIC_REWRITER.register_symbolic("mmcv.ops.roi_align.__self__", backend=BACKEND)
def roi_align__onnxruntime(g, features, rois, output_size: List[int], spatial_scale: float, sampling_ratio: int,
                           pool_mode: str, aligned: bool):
    """mmcv's ``RoIAlign`` as ONNX ``RoiAlign``: ``rois`` rows are ``(batch index, x1, y1, x2, y2)``."""
    opset = get_ir_config(SYMBOLIC_REWRITER.get_context().cfg).get("opset_version", 11)
    if aligned and opset < MIN_ALIGNED_OPSET:
        raise ValueError(f"RoIAlign(aligned=True) needs ONNX opset >= {MIN_ALIGNED_OPSET} (its half_pixel mode); "
                         f"the deploy config sets onnx_config.opset_version={opset}: use the configs in "
                         "configs/mmdeploy/ or set opset_version=16")
    batch_indices = g.op("Cast", g.op("Gather", rois, g.op("Constant", value_t=torch.tensor(0)), axis_i=1),
                         to_i=_INT64)
    boxes = g.op("Gather", rois, g.op("Constant", value_t=torch.tensor([1, 2, 3, 4])), axis_i=1)
    attributes = dict(output_height_i=output_size[0], output_width_i=output_size[1],
                      spatial_scale_f=spatial_scale, sampling_ratio_i=sampling_ratio, mode_s=pool_mode)
    if opset >= MIN_ALIGNED_OPSET:
        attributes["coordinate_transformation_mode_s"] = "half_pixel" if aligned else "output_half_pixel"
    return g.op("RoiAlign", features, boxes, batch_indices, **attributes)


def nms_per_group(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float, score_threshold: float,
                  max_num: int) -> Tensor:
    """Indices of the boxes kept by NMS run separately per group, best score first, at most ``max_num``.

    mmcv's ``batched_nms`` method: the boxes of each group are shifted by ``group * (max coordinate + 1)`` so that
    boxes of different groups never overlap, and one NMS (ONNX ``NonMaxSuppression``) runs over all of them. Boxes
    scoring ``<= score_threshold`` are dropped first, as in mmdet.
    """
    shifted = boxes + (groups.to(boxes) * (boxes.max() + 1))[:, None]
    selected = ONNXNMSop.apply(shifted[None], scores[None, None], max_num, iou_threshold, score_threshold)
    return selected[:, 2]


def _one_image(features: Tensor) -> None:
    if features.shape[0] != 1:
        raise ValueError(f"the ONNX export runs mmdet's per-image post-processing: export with batch 1, "
                         f"got a batch of {features.shape[0]}")


def _nms_cfg(cfg, where: str) -> float:
    nms = cfg.get("nms", {})
    if nms.get("type", "nms") != "nms":
        raise ValueError(f"{where}.nms.type={nms.get('type')!r} has no ONNX operator; the ONNX export runs plain "
                         f"NMS: set {where}.nms.type='nms'")
    return float(nms["iou_threshold"])


@FUNCTION_REWRITER.register_rewriter("mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat", backend=BACKEND)
def rpn_head__predict_by_feat(self, cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor],
                              score_factors=None, batch_img_metas: Optional[List[dict]] = None, cfg=None,
                              rescale: bool = False, with_nms: bool = True, **kwargs) -> Tuple[Tensor, Tensor]:
    """mmdet's RPN proposals: the ``nms_pre`` best anchors per level, decoded and clipped, boxes no larger than
    ``min_bbox_size`` dropped, NMS per level, the ``max_per_img`` best. Returns ``(dets [1, K, 5], labels [1, K])``,
    the form mmdeploy's R-CNN heads take."""
    cfg = self.test_cfg if cfg is None else cfg
    _one_image(cls_scores[0])
    priors = self.prior_generator.grid_priors([score.shape[-2:] for score in cls_scores],
                                              dtype=cls_scores[0].dtype, device=cls_scores[0].device)
    kept = [_level_candidates(self, score, delta, prior, cfg.get("nms_pre", -1))
            for score, delta, prior in zip(cls_scores, bbox_preds, priors)]
    scores, deltas, anchors = (torch.cat(parts) for parts in zip(*kept))
    levels = torch.cat([torch.full_like(level_scores, index, dtype=torch.long)
                        for index, (level_scores, _, _) in enumerate(kept)])
    boxes = get_box_tensor(self.bbox_coder.decode(anchors[None], deltas[None],
                                                  max_shape=batch_img_metas[0]["img_shape"]))[0]
    min_size = cfg.get("min_bbox_size", -1)
    if min_size >= 0:  # dropped boxes get a score below the NMS threshold: they neither survive nor suppress
        valid = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
        scores = torch.where(valid, scores, scores.new_full((), -1.0))
    keep = nms_per_group(boxes, scores, levels, _nms_cfg(cfg, "model.test_cfg.rpn"), -0.5, cfg.max_per_img)
    dets = torch.cat([boxes[keep], scores[keep, None]], dim=1)
    return dets[None], torch.zeros_like(keep)[None]


def _level_candidates(head, score: Tensor, delta: Tensor, prior: Tensor, nms_pre: int):
    """One level's ``(scores, deltas, anchors)``, its ``nms_pre`` best if it has more (image 0 of the batch)."""
    score = score[0].permute(1, 2, 0).reshape(-1, head.cls_out_channels)
    # Foreground probability: sigmoid of the one channel, or softmax's first column (the last is background).
    score = score.sigmoid()[:, 0] if head.use_sigmoid_cls else score.softmax(-1)[:, 0]
    delta = delta[0].permute(1, 2, 0).reshape(-1, head.bbox_coder.encode_size)
    if nms_pre > 0:  # mmdeploy's topk rewriter caps k at the level's size, as mmdet's `0 < nms_pre < n` does
        score, index = score.topk(nms_pre)
        delta, prior = delta[index], prior[index]
    return score, delta, prior


@FUNCTION_REWRITER.register_rewriter("mmdet.models.roi_heads.bbox_heads.bbox_head.BBoxHead.predict_by_feat",
                                     backend=BACKEND)
def bbox_head__predict_by_feat(self, rois: Tensor, cls_scores: Tensor, bbox_preds: Tensor,
                               batch_img_metas: List[dict], rcnn_test_cfg=None,
                               rescale: bool = False) -> Tuple[Tensor, Tensor]:
    """mmdet's ``multiclass_nms`` of the R-CNN head: every (RoI, class) pair scoring above ``score_thr`` with its
    class's regressed box, NMS per class, the ``max_per_img`` best. ``rois``: ``[1, N, 5]``; returns
    ``(dets [1, K, 5], labels [1, K])`` in the input image's coordinates (mmdeploy's backend model rescales)."""
    _one_image(rois)
    if self.custom_cls_channels:
        scores = self.loss_cls.get_activation(cls_scores)
    else:
        scores = F.softmax(cls_scores, dim=-1)
    boxes = get_box_tensor(self.bbox_coder.decode(rois[..., 1:], bbox_preds,
                                                  max_shape=batch_img_metas[0]["img_shape"]))[0]
    scores = scores[0, :, :self.num_classes]  # the last column is the background
    num_rois, num_classes = scores.shape
    boxes = boxes.reshape(num_rois, -1, 4).expand(num_rois, num_classes, 4).reshape(-1, 4)
    labels = torch.arange(num_classes, device=scores.device).expand(num_rois, num_classes).reshape(-1)
    scores = scores.reshape(-1)
    max_num = rcnn_test_cfg.max_per_img if rcnn_test_cfg.max_per_img > 0 else boxes.shape[0]
    keep = nms_per_group(boxes, scores, labels, _nms_cfg(rcnn_test_cfg, "model.test_cfg.rcnn"),
                         rcnn_test_cfg.score_thr, max_num)
    dets = torch.cat([boxes[keep], scores[keep, None]], dim=1)
    return dets[None], labels[keep][None]


@FUNCTION_REWRITER.register_rewriter("mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.predict_mask",
                                     backend=BACKEND)
def cascade_roi_head__predict_mask(self, x: Tuple[Tensor], batch_img_metas: List[dict],
                                   results_list: Tuple[Tensor, Tensor], rescale: bool = False):
    """``(dets, labels, masks [1, N, 28, 28])``: each detection's mask probabilities for its class, the mean over
    the stages of their sigmoid, as mmdet's ``merge_aug_masks`` (pasted outside the graph)."""
    dets, labels = results_list
    _one_image(dets)
    if get_post_processing_params(FUNCTION_REWRITER.get_context().cfg).get("export_postprocess_mask", False):
        raise ValueError("Cascade mask heads export their 28x28 masks: set codebase_config.post_processing."
                         "export_postprocess_mask=False in the deploy config (as configs/mmdeploy/ do)")
    boxes = dets[0, :, :4]
    rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)  # (image index 0, box)
    probabilities = sum(self._mask_forward(stage, x, rois)["mask_preds"].sigmoid()
                        for stage in range(self.num_stages)) / self.num_stages
    if not self.mask_head[-1].class_agnostic:
        probabilities = probabilities[torch.arange(boxes.shape[0], device=boxes.device), labels[0]]
    else:
        probabilities = probabilities[:, 0]
    return dets, labels, probabilities[None]


@FUNCTION_REWRITER.register_rewriter("torch.nn.functional.adaptive_avg_pool2d", backend=BACKEND)
def adaptive_avg_pool2d__onnxruntime(input: Tensor, output_size) -> Tensor:
    """``F.adaptive_avg_pool2d`` for any input size, exported with standard operators (CumSum, Gather)."""
    size = _pair(output_size)
    if None in size or all(count == 1 for count in size):  # 1x1: the exporter's GlobalAveragePool
        return FUNCTION_REWRITER.get_context().origin_func(input, output_size)
    return _adaptive_mean(_adaptive_mean(input, 2, size[0]), 3, size[1])  # a window's mean is separable


def _adaptive_mean(x: Tensor, dim: int, count: int) -> Tensor:
    """Adaptive average pooling along ``dim`` to ``count`` cells: cell i averages the input positions from
    ``floor(i * n / count)`` to ``ceil((i + 1) * n / count)`` (exclusive), as torch's adaptive pooling."""
    length = x.shape[dim]  # traced in a dynamic graph
    index = torch.arange(count, device=x.device)
    start = torch.div(index * length, count, rounding_mode="floor")
    end = torch.div((index + 1) * length + count - 1, count, rounding_mode="floor")
    padding = [0, 0] * (x.dim() - 1 - dim) + [1, 0]  # one leading zero along dim: sums[k] = sum of x[:k]
    sums = F.pad(x.cumsum(dim), padding)
    shape = [1] * x.dim()
    shape[dim] = count
    return (sums.index_select(dim, end) - sums.index_select(dim, start)) / (end - start).to(x.dtype).view(shape)


def pads_inside(model_class: Optional[type]) -> bool:
    """Whether this project's exports of models of ``model_class`` take the image unpadded (two-stage detectors,
    see the module docstring)."""
    from mmdet.models.detectors import TwoStageDetector
    return isinstance(model_class, type) and issubclass(model_class, TwoStageDetector)


def unpadded_preprocessor(cfg: ConfigDict) -> ConfigDict:
    """A copy of a data preprocessor config that pads nothing (the graph pads, ``two_stage_detector__forward``)."""
    cfg = ConfigDict(cfg)
    cfg["pad_size_divisor"] = 1
    return cfg


@FUNCTION_REWRITER.register_rewriter("mmdet.models.detectors.two_stage.TwoStageDetector.forward", backend=BACKEND)
def two_stage_detector__forward(self, batch_inputs: Tensor, data_samples=None, mode: str = "tensor", **kwargs):
    """Detections of the unpadded image ``batch_inputs``: ``(dets, labels[, masks])`` of the R-CNN heads, boxes
    clipped to the image. The image is padded here to the data preprocessor's ``pad_size_divisor`` with its
    ``pad_value`` (bottom and right, as mmengine's ``stack_batch``)."""
    if is_dynamic_shape(FUNCTION_REWRITER.get_context().cfg):
        img_shape = torch._shape_as_tensor(batch_inputs)[2:]  # traced: the graph reads the size of its input
    else:
        img_shape = [int(size) for size in batch_inputs.shape[2:]]
    height, width = batch_inputs.shape[2:]
    divisor = getattr(self.data_preprocessor, "pad_size_divisor", 1)
    padded = F.pad(batch_inputs, (0, (divisor - width % divisor) % divisor, 0, (divisor - height % divisor) % divisor),
                   value=float(getattr(self.data_preprocessor, "pad_value", 0)))
    for sample in data_samples:
        sample.set_field(name="img_shape", value=img_shape, field_type="metainfo")
    features = self.extract_feat(padded)
    proposals = self.rpn_head.predict(features, data_samples, rescale=False)
    return self.roi_head.predict(features, proposals, data_samples, rescale=False)
