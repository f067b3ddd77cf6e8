"""Tiny versions of the shipped mmdet / mmseg configs for the deployment tests, random weights that give detections,
and the tests' own reading of an exported file (onnxruntime directly, mmdet's / mmseg's own pre- and
post-processing; not the deploy tools' code)."""
import copy
from typing import Dict, List, Tuple

import numpy as np
import onnxruntime
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

import resnest_backbones
from conftest import randomize_norms

BN = dict(type="BN", requires_grad=True)
CHANNELS = 32  # FPN and head width of the tiny detectors
NUM_CLASSES = {"mmdet": 3, "mmseg": 5}


def _tiny_backbone(cfg: Config) -> None:
    cfg.model.backbone.update(variant="resnest14", norm_cfg=BN, init_cfg=None)
    cfg.model.pop("pretrained", None)


def _resize(cfg: Config, scale) -> None:
    for step in cfg.test_pipeline:
        if step["type"] == "Resize":
            step.update(scale=scale, keep_ratio=True)


def tiny_detector(name: str, scale=(192, 144)) -> Config:
    """A shipped mmdet config with ResNeSt-14, BN, 32-channel FPN and heads, 3 classes, few proposals and a small
    test size; the detector's structure (heads, stages, masks) is the config's."""
    cfg = Config.fromfile(resnest_backbones.config_path(f"mmdet/{name}"))
    if "quickstart" in name:
        return cfg
    _tiny_backbone(cfg)
    model, width = cfg.model, CHANNELS
    model.neck.out_channels = width
    model.rpn_head.update(in_channels=width, feat_channels=width)
    model.roi_head.bbox_roi_extractor.out_channels = width
    heads = model.roi_head.bbox_head if isinstance(model.roi_head.bbox_head, list) else [model.roi_head.bbox_head]
    for head in heads:
        head.update(in_channels=width, conv_out_channels=width, fc_out_channels=2 * width, norm_cfg=BN,
                    num_classes=NUM_CLASSES["mmdet"])
    if "mask_head" in model.roi_head:
        model.roi_head.mask_roi_extractor.out_channels = width
        model.roi_head.mask_head.update(in_channels=width, conv_out_channels=width, norm_cfg=BN,
                                        num_classes=NUM_CLASSES["mmdet"])
    model.test_cfg.rpn.update(nms_pre=300, max_per_img=100)
    model.test_cfg.rcnn.max_per_img = 30
    _resize(cfg, scale)
    return cfg


def tiny_segmentor(name: str, scale=(96, 96)) -> Config:
    """A shipped mmseg config with ResNeSt-14, BN, narrow heads, 5 classes and a test size below the image's (so
    the logits are resized back to the original image, as for real images)."""
    cfg = Config.fromfile(resnest_backbones.config_path(f"mmseg/{name}"))
    if "quickstart" in name:
        return cfg
    _tiny_backbone(cfg)
    cfg.model.decode_head.update(channels=16, num_classes=NUM_CLASSES["mmseg"], norm_cfg=BN)
    if "c1_channels" in cfg.model.decode_head:
        cfg.model.decode_head.c1_channels = 8
    cfg.model.auxiliary_head.update(channels=8, num_classes=NUM_CLASSES["mmseg"], norm_cfg=BN)
    _resize(cfg, scale)
    return cfg


def build(cfg: Config, seed: int = 0) -> torch.nn.Module:
    """The config's model (its framework's registry) in eval mode, with random weights spread so that scores and
    mask probabilities are far apart (random heads otherwise score every box alike, and ties make the comparison
    about rounding, not about the export)."""
    from mmengine.registry import init_default_scope
    scope = "mmdet" if "roi_head" in cfg.model or "rpn_head" in cfg.model else "mmseg"
    init_default_scope(scope)
    registry = __import__(f"{scope}.registry", fromlist=["MODELS"]).MODELS
    __import__(f"{scope}.utils", fromlist=["register_all_modules"]).register_all_modules(init_default_scope=False)
    torch.manual_seed(seed)
    model = registry.build(copy.deepcopy(cfg.model))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith(("neck", "rpn_head", "roi_head")) and parameter.dim() > 1:
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in ** 0.5)
            if "conv_logits" in name:  # mask logits far from 0: probabilities far from the 0.5 threshold
                parameter.mul_(30)
    return randomize_norms(model, seed).eval()


def prepare(cfg: Config, model, image: str, scale=None, pad: bool = True) -> Tuple[torch.Tensor, list]:
    """``(inputs, data_samples)`` of ``image`` through the config's test pipeline (without annotations) and the
    model's data preprocessor, as mmengine's test loop makes them; ``scale`` overrides the Resize scale;
    ``pad=False``: without the preprocessor's padding (what the exported two-stage detectors take)."""
    cfg = copy.deepcopy(cfg)
    if scale is not None:
        _resize(cfg, scale)
    pipeline = Compose([step for step in cfg.test_pipeline if step["type"] != "LoadAnnotations"])
    preprocessor = model.data_preprocessor
    if not pad:
        preprocessor = copy.deepcopy(preprocessor)
        preprocessor.pad_size_divisor = 1
    data = preprocessor(pseudo_collate([pipeline(dict(img_path=image, img_id=0))]), False)
    return data["inputs"], data["data_samples"]


def run_onnx(path: str, inputs: torch.Tensor) -> List[np.ndarray]:
    """The file's outputs on ``inputs`` with a plain ONNX Runtime session (no custom-ops library)."""
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": inputs.numpy()})


def paste_masks(probabilities: np.ndarray, boxes: np.ndarray, shape) -> torch.Tensor:
    """28x28 mask probabilities pasted into an image of ``shape`` by mmdet's own ``_do_paste_mask``, thresholded at
    0.5 (mmdet's ``mask_thr_binary``)."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    masks, _ = _do_paste_mask(torch.from_numpy(probabilities)[:, None], torch.from_numpy(boxes), shape[0], shape[1],
                              skip_empty=False)
    return masks >= 0.5


def detection_differences(reference, dets: np.ndarray, labels: np.ndarray, masks=None) -> Dict[str, float]:
    """Largest box and score differences and smallest mask IoU between mmdet's ``InstanceData`` (in input-image
    coordinates) and the raw ONNX outputs of one image, matched by rank of score."""
    order = reference.scores.argsort(descending=True)
    theirs = np.argsort(-dets[0, :, 4], kind="stable")
    boxes, scores = torch.from_numpy(dets[0, theirs, :4]), torch.from_numpy(dets[0, theirs, 4])
    assert len(order) == len(theirs), (len(order), len(theirs))
    assert torch.equal(reference.labels[order], torch.from_numpy(labels[0, theirs]).long())
    result = dict(box=(reference.bboxes[order] - boxes).abs().max().item(),
                  score=(reference.scores[order] - scores).abs().max().item(), mask_iou=1.0)
    if masks is not None:
        pasted = paste_masks(masks[0, theirs], dets[0, theirs, :4], reference.masks.shape[-2:])
        expected = reference.masks[order]
        union = (pasted | expected).flatten(1).sum(1)
        iou = (pasted & expected).flatten(1).sum(1) / union.clamp(min=1)
        result["mask_iou"] = torch.where(union > 0, iou, torch.ones_like(iou)).min().item()  # empty = empty
    return result
