"""An mmdeploy ONNX file run by ONNX Runtime as an mmdet / mmseg model, and its comparison with PyTorch.

Used by ``tools/deploy_openmmlab.py`` (the check after export) and ``tools/test_openmmlab_onnx.py`` (evaluation).
The model is mmdeploy's backend model (``task_processor.build_backend_model``: preprocessing in PyTorch, the graph
in ONNX Runtime, mmdeploy's post-processing into data samples), with one change for mmseg: logits exported by a
``with_argmax=False`` deploy config are turned into the prediction by mmseg's own ``postprocess_result`` (padding
removed, logits resized bilinearly to the original image, then argmax), as the PyTorch segmentor does; mmdeploy's
backend model instead resizes the argmax map with nearest neighbours.

Per-image agreement (``compare``), the tolerances of the project's deployment check: the same detections with the
same classes, boxes within 0.5 px, scores within 1e-4, mask IoU >= 0.99 per instance (or at most 2 pixels apart:
float rounding at the threshold); segmentation logits within 1e-4 of their largest magnitude.
"""
import types
from typing import List, Optional, Tuple

import torch
from mmdeploy.codebase.mmseg.deploy.segmentation_model import End2EndModel as MmsegEnd2EndModel
from mmdeploy.utils import Backend, get_codebase_config, load_config

from .onnx_tolerances import BOX_PX, LOGITS_RELATIVE, MASK_IOU, MASK_ROUNDING_PIXELS, SCORE, mask_iou, masks_agree

_STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


class DeployError(RuntimeError):
    """A deployment problem the user can fix; the message names the input and the fix."""


class MmsegPostprocessModel(MmsegEnd2EndModel):
    """mmdeploy's mmseg backend model whose logits become predictions through mmseg's ``postprocess_result``.

    Args:
        align_corners (bool): the decode head's ``align_corners`` (the logits' resize to the original image).
        threshold (float): the decode head's ``threshold`` (models with one output channel).
        *args, **kwargs: those of mmdeploy's ``End2EndModel``.
    """

    def __init__(self, *args, align_corners: bool = False, threshold: float = 0.3, **kwargs):
        super().__init__(*args, **kwargs)
        # The two attributes postprocess_result reads from a segmentor.
        self._segmentor = types.SimpleNamespace(align_corners=align_corners,
                                                decode_head=types.SimpleNamespace(threshold=threshold))

    def pack_result(self, batch_outputs: torch.Tensor, data_samples: list) -> list:
        from mmseg.models.segmentors import BaseSegmentor
        return BaseSegmentor.postprocess_result(self._segmentor, batch_outputs, data_samples)


def unsupported_operators(onnx_path: str) -> List[str]:
    """``domain::op`` of every node outside the standard ONNX domains (what only a custom-ops library can run)."""
    import onnx
    graph = onnx.load(onnx_path, load_external_data=False).graph
    return sorted({f"{node.domain}::{node.op_type}" for node in graph.node if node.domain not in _STANDARD_DOMAINS})


def _preprocessor_updater(task_processor):
    """mmdeploy's data preprocessor update, and no padding for the graphs that pad the image themselves."""
    def update(cfg):
        cfg = task_processor.update_data_preprocessor(cfg)
        if task_processor.codebase.value == "mmdet":
            from mmdet.registry import MODELS

            from .mmdeploy_rewriters import pads_inside, unpadded_preprocessor
            if pads_inside(MODELS.get(task_processor.model_cfg.model.type)):
                cfg = unpadded_preprocessor(cfg)
        return cfg
    return update


def build_onnx_model(task_processor, onnx_path: str) -> torch.nn.Module:
    """The ONNX file as an mmdet / mmseg model on CPU (``model(inputs, data_samples, mode='predict')``).

    Raises:
        DeployError: ONNX Runtime cannot load the file, naming the operators it has no kernel for.
    """
    deploy_cfg, model_cfg = task_processor.deploy_cfg, task_processor.model_cfg
    update = _preprocessor_updater(task_processor)
    try:
        if task_processor.codebase.value == "mmseg" and not get_codebase_config(deploy_cfg).get("with_argmax", True):
            head = model_cfg.model.decode_head
            head = head[-1] if isinstance(head, (list, tuple)) else head  # cascade decoders: the last one predicts
            return MmsegPostprocessModel(
                Backend.ONNXRUNTIME, [onnx_path], "cpu", deploy_cfg,
                data_preprocessor=update(model_cfg.model.data_preprocessor),
                align_corners=head.get("align_corners", False), threshold=head.get("threshold") or 0.3).eval()
        return task_processor.build_backend_model([onnx_path], data_preprocessor_updater=update)
    except Exception as error:
        if "onnxruntime" not in type(error).__module__:
            raise
        custom = unsupported_operators(onnx_path)
        first = " ".join(str(error).split())[:300]
        if not custom:
            raise DeployError(f"ONNX Runtime cannot load {onnx_path}: {first}") from None
        raise DeployError(f"ONNX Runtime cannot run {onnx_path}: it has no kernel for {', '.join(custom)} (custom "
                          "operators that neither ONNX nor mmdeploy's ONNX Runtime ops library defines): deploy a "
                          "model without the layers that export to them, or to a backend that implements them "
                          f"({first})") from None


def load_configs(deploy_cfg: str, model_cfg: str):
    """``(deploy_cfg, model_cfg)`` as mmengine Configs, checked to be an ONNX Runtime deployment."""
    deploy, model = load_config(deploy_cfg, model_cfg)
    backend = deploy.get("backend_config", {}).get("type")
    if backend != Backend.ONNXRUNTIME.value or deploy.get("onnx_config", {}).get("type") != "onnx":
        raise DeployError(f"{deploy_cfg} deploys to {backend!r}; these tools export and check ONNX for ONNX Runtime: "
                          "use a deploy config from configs/mmdeploy/ (for TensorRT, see docs/deploy.md)")
    return deploy, model


def _match(reference, exported) -> List[Tuple[int, Optional[int]]]:
    """For each reference detection (best score first), the unmatched exported one of the same class with the
    closest box (largest coordinate difference), or None."""
    distance = (reference.bboxes[:, None] - exported.bboxes[None]).abs().amax(-1)
    distance[reference.labels[:, None] != exported.labels[None]] = float("inf")
    free, pairs = set(range(len(exported))), []
    for index in reference.scores.argsort(descending=True).tolist():
        candidates = sorted(free, key=lambda j: distance[index, j].item())
        best = candidates[0] if candidates and distance[index, candidates[0]] < float("inf") else None
        free.discard(best)
        pairs.append((index, best))
    return pairs


def compare_detections(reference, exported) -> List[str]:
    """Problems between two ``InstanceData`` (empty if they agree within the tolerances)."""
    if len(reference) != len(exported):
        return [f"{len(exported)} detections instead of {len(reference)}"]
    problems = []
    for index, match in _match(reference, exported):
        if match is None:
            problems.append(f"no detection of class {reference.labels[index].item()} near box "
                            f"{[round(v, 1) for v in reference.bboxes[index].tolist()]}")
            continue
        box = (reference.bboxes[index] - exported.bboxes[match]).abs().max().item()
        score = abs(reference.scores[index].item() - exported.scores[match].item())
        if box > BOX_PX or score > SCORE:
            problems.append(f"detection {index}: box differs by {box:.3g} px (limit {BOX_PX}), score by {score:.3g} "
                            f"(limit {SCORE})")
        if "masks" in reference:
            mask, exported_mask = reference.masks[index].cpu(), exported.masks[match].cpu()
            if not masks_agree(mask, exported_mask):
                problems.append(f"detection {index}: mask IoU {mask_iou(mask, exported_mask):.4f} < {MASK_IOU}")
    return problems


def compare(reference, exported) -> List[str]:
    """Problems between a PyTorch and an ONNX data sample (mmdet ``pred_instances`` or mmseg ``seg_logits``)."""
    if "pred_instances" in reference:
        return compare_detections(reference.pred_instances, exported.pred_instances)
    expected, actual = reference.seg_logits.data, exported.seg_logits.data
    if expected.shape != actual.shape:
        return [f"logits of shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"]
    error = ((expected - actual).abs().max() / expected.abs().max().clamp(min=1e-12)).item()
    return [f"logits differ by {error:.3g} of their largest magnitude (limit {LOGITS_RELATIVE})"] \
        if error > LOGITS_RELATIVE else []


def summary(sample) -> str:
    """A few words on one prediction, for logs."""
    if "pred_instances" in sample:
        return f"{len(sample.pred_instances)} detections"
    return f"logits {tuple(sample.seg_logits.data.shape)}"


__all__ = ["BOX_PX", "DeployError", "LOGITS_RELATIVE", "MASK_IOU", "MASK_ROUNDING_PIXELS", "MmsegPostprocessModel",
           "SCORE", "build_onnx_model", "compare", "compare_detections", "load_configs", "summary",
           "unsupported_operators"]
