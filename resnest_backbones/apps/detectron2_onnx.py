"""ONNX export of ResNeSt detectors by detectron2's own tracing export (``TracingAdapter`` + ``torch.onnx.export``, as
detectron2's ``tools/deploy/export_model.py --format onnx --export-method tracing``), and the check of the written
file against eager PyTorch through the ONNX runner (``resnest_backbones.onnx_runner``).

The exported graph takes one CHW float32 image (0-255, the model's channel order, already resized by
``ResizeShortestEdge``; any height and width) named ``image``, and returns the detections before detectron2's
resizing to the original image, named after their ``Instances`` fields: ``pred_boxes`` (N, 4), ``pred_classes``,
``scores``, ``pred_masks`` (N, 1, 28, 28 probabilities; mask models) and ``image_size`` (the input's height and
width). Normalisation, the backbone, proposals, NMS and the heads are in the graph; the backbone in its fused form
(``resnest_backbones.fast_inference.to_fast_inference``: BatchNorm folded into the convolutions). The runner's
settings (sizes, channel order, class names, mask threshold) go into the file's metadata (``METADATA_KEY``).
"""
import io
import json
import logging
import warnings
from typing import Dict, List, Optional

import numpy as np
import torch
from detectron2.modeling import GeneralizedRCNN
from torch import nn

from ..atomic_io import atomic_write
from ..detectron2 import find_resnest
from ..onnx_runner import INPUT_NAME, METADATA_KEY, OnnxPredictor
from .detectron2_export import detectron2_export, model_input
from .detectron2_train import fast_inference_copy
from .onnx_tolerances import BOX_PX, MASK_IOU, SCORE, mask_iou, masks_agree

logger = logging.getLogger("detectron2.resnest_backbones")
OPSET = 17
# torchvision exports RoIAlign(aligned=True), which every R-CNN here uses, exactly from opset 16 on
# (coordinate_transformation_mode); below that it exports an approximation with a warning.
MIN_OPSET = 16
# The newest opset torch's TorchScript-based exporter (dynamo=False) writes.
MAX_OPSET = getattr(torch.onnx._constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", OPSET)


def _inference(model: nn.Module, image: torch.Tensor):
    # do_postprocess=False: the 28x28 masks and boxes in the resized image; the runner pastes and rescales them.
    return model.inference([{"image": image}], do_postprocess=False)[0]


def _output_names(schema) -> List[str]:
    """The flattened outputs of ``TracingAdapter`` named after the ``Instances`` fields (one tensor each)."""
    if any(size != 1 for size in schema.sizes):
        raise ValueError(f"Cannot name the outputs of this model's Instances ({schema}): a field is not one tensor")
    return list(schema.keys) + ["image_size"]


def check_opset(opset: int) -> None:
    """Raise unless ``opset`` is one this export writes exactly (``MIN_OPSET``..``MAX_OPSET``)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"--opset {opset}: use {MIN_OPSET}..{MAX_OPSET} (RoIAlign with "
                         f"aligned=True exports exactly from opset {MIN_OPSET}); the default is {OPSET}")


def export_onnx(model: nn.Module, image: torch.Tensor, path: str, metadata: Dict, opset: int = OPSET) -> List[str]:
    """Write ``model`` (an eval-mode R-CNN with a ResNeSt backbone, which is not changed) to ``path`` by detectron2's
    tracing; returns the output names.

    Args:
        model: the detector; a copy with the fused backbone is traced.
        image: CHW float tensor as the model receives it at test time (resized, the model's channel order).
        path: the ``.onnx`` file, written atomically (complete or absent).
        metadata: the runner's settings (``Deployment.runner_metadata()``), stored under ``METADATA_KEY``.
        opset: ONNX opset version.
    """
    training = [name or "<model>" for name, module in model.named_modules() if module.training]
    if training:
        raise ValueError(f"Export a model in eval mode: call model.eval() first (the export traces inference); in "
                         f"training mode: {', '.join(training[:3])}{' ...' if len(training) > 3 else ''}")
    check_opset(opset)
    if not isinstance(model, GeneralizedRCNN):
        raise ValueError(f"The ONNX export covers R-CNN detectors (META_ARCHITECTURE GeneralizedRCNN), not "
                         f"{type(model).__name__}")
    if find_resnest(model)[1] is None:
        raise ValueError("The model has no ResNeSt backbone: set MODEL.BACKBONE.NAME to build_resnest_fpn_backbone "
                         "(this export writes the ResNeSt backbone in its fused form)")
    return trace_to_onnx(fast_inference_copy(model), image, path, metadata, opset)


def trace_to_onnx(model: nn.Module, image: torch.Tensor, path: str, metadata: Dict, opset: int = OPSET) -> List[str]:
    """The tracing export itself (no checks, no fusing): ``model`` through detectron2's ``TracingAdapter`` and
    ``torch.onnx.export`` to ``path``; returns the output names. Also exports detectron2's own R-CNNs (the
    benchmark's ResNet-50 baseline)."""
    import onnx

    adapter = detectron2_export().TracingAdapter(model, (image,), _inference).eval()
    with torch.no_grad():
        adapter(image)  # records the output schema, which names the outputs
    names = _output_names(adapter.outputs_schema)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on Python values recorded as constants
        torch.onnx.export(adapter, (image,), buffer, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={INPUT_NAME: {1: "height", 2: "width"},
                                        **{n: {0: "detections"} for n in names if n != "image_size"}},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    exported = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(exported, {METADATA_KEY: json.dumps(metadata)})
    atomic_write(path, lambda handle: handle.write(exported.SerializeToString()))
    return names


def compare_predictions(expected: Dict, actual: Dict) -> Optional[str]:
    """The first difference between two predictions (dicts of numpy arrays as ``OnnxPredictor`` returns) beyond
    the tolerances (same classes, boxes within 0.5 px, scores within 1e-4, mask IoU >= 0.99 or at most 2 pixels
    apart), or None.

    Detections are matched one to one (ties in score may order them differently): each expected one, by score, to
    the closest unmatched actual one of its class within the box and score tolerances."""
    if len(expected["scores"]) != len(actual["scores"]):
        return f"{len(actual['scores'])} detections instead of {len(expected['scores'])}"
    free = np.ones(len(actual["scores"]), dtype=bool)
    for i in np.argsort(-expected["scores"], kind="stable"):
        distance = np.abs(actual["pred_boxes"] - expected["pred_boxes"][i]).max(axis=1)
        fits = (free & (actual["pred_classes"] == expected["pred_classes"][i]) & (distance <= BOX_PX)
                & (np.abs(actual["scores"] - expected["scores"][i]) <= SCORE))
        if not fits.any():
            return (f"no detection of class {expected['pred_classes'][i]} with score {expected['scores'][i]:.5f} and "
                    f"box {np.round(expected['pred_boxes'][i], 2).tolist()} within {BOX_PX} px and "
                    f"{SCORE} of score")
        j = int(np.argmin(np.where(fits, distance, np.inf)))
        free[j] = False
        if "pred_masks" in expected and not masks_agree(expected["pred_masks"][i], actual["pred_masks"][j]):
            return (f"the mask of detection {i} (class {expected['pred_classes'][i]}) has IoU "
                    f"{mask_iou(expected['pred_masks'][i], actual['pred_masks'][j]):.4f} < {MASK_IOU}")
    return None


def instances_to_numpy(instances) -> Dict:
    """detectron2 ``Instances`` (``DefaultPredictor``'s output) as the runner's dict of numpy arrays."""
    result = {"pred_boxes": instances.pred_boxes.tensor.cpu().numpy(), "scores": instances.scores.cpu().numpy(),
              "pred_classes": instances.pred_classes.cpu().numpy(), "image_size": tuple(instances.image_size)}
    if instances.has("pred_masks"):
        result["pred_masks"] = instances.pred_masks.cpu().numpy().astype(bool)
    return result


def eager_predict(model: nn.Module, image: np.ndarray, short_edge: int, max_size: int) -> Dict:
    """``DefaultPredictor``'s steps in eager PyTorch for an HxWx3 image already in the model's channel order."""
    height, width = image.shape[:2]
    with torch.no_grad():
        outputs = model([{"image": model_input(image, short_edge, max_size), "height": height, "width": width}])
    return instances_to_numpy(outputs[0]["instances"])


def check_against_eager(path: str, model: nn.Module, deployment, sample_image: str) -> Dict:
    """Run ``path`` by the ONNX runner on ``sample_image`` and compare with eager ``model``; raises one line on
    a difference. Returns the runner's predictions."""
    from detectron2.data.detection_utils import read_image

    actual = OnnxPredictor(path)(sample_image)
    image = read_image(sample_image, format=deployment.input_format)
    expected = eager_predict(model, image, deployment.min_size_test, deployment.max_size_test)
    problem = compare_predictions(expected, actual)
    logger.info(f"onnx: wrote {path}; on {sample_image} {len(actual['scores'])} detections (eager "
                f"{len(expected['scores'])}){', matching eager PyTorch' if problem is None else ''}")
    if problem is not None:
        raise RuntimeError(f"The ONNX model differs from eager PyTorch on {sample_image}: {problem}; {path} was "
                           "written for inspection.")
    return actual
