"""TorchScript export of ResNeSt detectors through detectron2's own export paths (``tools/export_detectron2.py
--format torchscript``, whose command line is ``detectron2_export_tool``; ONNX is ``detectron2_onnx``).

- **scripting**: ``detectron2.export.scripting_with_instances`` compiles the model with static ``Instances`` fields.
  The exported module takes ``List[Dict[str, Tensor]]`` (detectron2's input format: ``{"image": CHW tensor}``) and
  returns one ``Dict[str, Tensor]`` per image (``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks``), before
  detectron2's resizing to the original image size, as ``model.inference(..., do_postprocess=False)``.
- **tracing**: ``detectron2.export.TracingAdapter`` flattens inputs and outputs to tensors for ``torch.jit.trace``;
  the exported module takes one CHW image tensor and returns the flattened instances (``adapter.outputs_schema``
  rebuilds them). Tracing records one path: image sizes can change, the model's control flow cannot.

Both export the model in eval mode; the ResNeSt backbone is scriptable as is (its forward is straight-line code;
training-only formulations are bypassed there). detectron2 v0.6's ``detectron2/export/__init__.py`` imports caffe2,
which current torch no longer ships: ``detectron2_export()`` then loads the two export modules (``torchscript``,
``flatten``) without that package initialiser. Newer detectron2 imports as usual.
"""
import copy
import importlib
import importlib.util
import logging
import os
import sys
import types
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

from ..cli import error_message

logger = logging.getLogger("detectron2.resnest_backbones")
# Instances fields an R-CNN creates during inference (scripting needs every one declared, with its type).
RCNN_FIELDS = {"proposal_boxes": Boxes, "objectness_logits": Tensor, "pred_boxes": Boxes, "scores": Tensor,
               "pred_classes": Tensor, "pred_masks": Tensor}
METHODS = ("scripting", "tracing")


def detectron2_export() -> types.SimpleNamespace:
    """``scripting_with_instances``, ``TracingAdapter`` and ``dump_torchscript_IR`` from ``detectron2.export``."""
    try:
        export = importlib.import_module("detectron2.export")
        torchscript, flatten = export, export
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("caffe2"):
            raise
        torchscript, flatten = _load_without_package_init("detectron2.export", ("torchscript", "flatten"))
    return types.SimpleNamespace(scripting_with_instances=torchscript.scripting_with_instances,
                                 dump_torchscript_IR=torchscript.dump_torchscript_IR,
                                 TracingAdapter=flatten.TracingAdapter)


def _load_without_package_init(package: str, names: Sequence[str]) -> List[types.ModuleType]:
    """Import ``package.<name>`` modules with a bare stand-in for ``package`` (its ``__init__`` is not run); the
    stand-in is removed afterwards, so a later ``import package`` behaves as before."""
    spec = importlib.util.find_spec(package)
    stand_in = types.ModuleType(package)
    stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.__spec__ = spec
    previous = sys.modules.pop(package, None)
    sys.modules[package] = stand_in
    try:
        return [importlib.import_module(f"{package}.{name}") for name in names]
    finally:
        del sys.modules[package]
        if previous is not None:
            sys.modules[package] = previous


class ScriptableRCNN(nn.Module):
    """A ``GeneralizedRCNN`` with a TorchScript-friendly signature: images in, one field dict per image out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: List[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
        instances = self.model.inference(inputs, do_postprocess=False)
        return [i.get_fields() for i in instances]


def script_rcnn(model: nn.Module, fields: Optional[Dict[str, type]] = None) -> torch.jit.ScriptModule:
    """``scripting_with_instances`` of an R-CNN in eval mode, wrapped by ``ScriptableRCNN``.

    Scripts a copy: torch replaces submodules by their ``__prepare_scriptable__`` versions in place, and detectron2's
    FPN prepares into a module with other state-dict names (``lateral_convs.N``), which would leave ``model`` unable
    to save checkpoints that load into a new model.
    """
    if model.training:
        raise ValueError("Export a model in eval mode: call model.eval() first (detectron2 scripts inference only)")
    wrapper = ScriptableRCNN(copy.deepcopy(model)).eval()
    return detectron2_export().scripting_with_instances(wrapper, fields or RCNN_FIELDS)


def _inference(model: nn.Module, image: Tensor) -> Instances:
    return model.inference([{"image": image}], do_postprocess=False)[0]


def trace_rcnn(model: nn.Module, image: Tensor):
    """``torch.jit.trace`` of ``TracingAdapter(model, image)``; returns ``(traced module, adapter)``, the adapter's
    ``outputs_schema(traced(image))`` giving back ``Instances``."""
    if model.training:
        raise ValueError("Export a model in eval mode: call model.eval() first")
    adapter = detectron2_export().TracingAdapter(model, (image,), _inference)
    adapter.eval()
    with torch.no_grad():
        return torch.jit.trace(adapter, (image,)), adapter


def instances_difference(reference: Instances, fields: Dict[str, Tensor]) -> Tuple[int, float]:
    """``(count of exported detections, largest absolute difference)`` between eager ``Instances`` and exported
    fields; the count differing from the eager one is reported as an infinite difference."""
    worst = 0.0
    for name in ("pred_boxes", "scores", "pred_classes", "pred_masks"):
        if not reference.has(name):
            continue
        expected = reference.get(name)
        expected = expected.tensor if isinstance(expected, Boxes) else expected
        actual = fields[name]
        actual = actual.tensor if isinstance(actual, Boxes) else actual
        if actual.shape != expected.shape:
            return len(actual), float("inf")
        if actual.numel():
            worst = max(worst, (actual.float() - expected.float()).abs().max().item())
    return len(fields["scores"]), worst


def export(model: nn.Module, image: Tensor, method: str, output_dir: str) -> str:
    """Export ``model`` (eval mode) by ``method`` (``scripting`` or ``tracing``) to ``output_dir/model.ts``, reload
    the file and check it against eager on ``image`` (CHW, the model's input format). Returns the file's path."""
    if method not in METHODS:
        raise ValueError(f"--export-method must be one of {METHODS}, got {method!r}")
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "model.ts")
    with torch.no_grad():
        reference = _inference(model, image)
        if method == "scripting":
            torch.jit.save(script_rcnn(model), path)
            exported = torch.jit.load(path)([{"image": image}])[0]
        else:
            traced, adapter = trace_rcnn(model, image)
            torch.jit.save(traced, path)
            exported = adapter.outputs_schema(torch.jit.load(path)(image)).get_fields()
    count, difference = instances_difference(reference, exported)
    logger.info(f"{method}: wrote {path}; on the sample image {count} detections (eager {len(reference)}), largest "
                f"difference to eager {difference:.2e}")
    if count != len(reference) or difference > 1e-3:
        raise RuntimeError(f"The exported model differs from eager PyTorch ({count} vs {len(reference)} detections, "
                           f"largest difference {difference:.2e}); {path} was written for inspection.")
    return path


def model_input(image: np.ndarray, short_edge: int, max_size: int) -> Tensor:
    """An HxWx3 image (the model's channel order) as the model receives it at test time: detectron2's
    ``ResizeShortestEdge([short_edge] * 2, max_size)``, as ``DefaultPredictor``, then a CHW float tensor."""
    from detectron2.data import transforms as T
    image = T.ResizeShortestEdge([short_edge] * 2, max_size).get_transform(image).apply_image(image)
    return torch.as_tensor(image.astype("float32").transpose(2, 0, 1))


def sample_image(cfg, path: Optional[str] = None) -> Tensor:
    """A CHW input as the model receives it at test time: ``path``, else the first image of ``DATASETS.TEST[0]``,
    resized as detectron2's test loader does (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``)."""
    from detectron2.data import DatasetCatalog
    if path is None:
        if not cfg.DATASETS.TEST:
            raise ValueError("No sample image: pass --sample-image, or set DATASETS.TEST")
        path = DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]["file_name"]
    return model_input(read_sample_image(path, cfg.INPUT.FORMAT), cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)


def read_sample_image(path: str, input_format: str) -> np.ndarray:
    """detectron2's ``read_image`` of ``--sample-image``, with errors that name the flag."""
    from detectron2.data.detection_utils import read_image
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--sample-image {path}: no such file; give an image file (.jpg, .png).")
    try:
        return read_image(path, format=input_format)
    except OSError as error:  # PIL's UnidentifiedImageError too
        raise ValueError(f"--sample-image {path} is not an image detectron2 can read ({error_message(error)}); give "
                         "a .jpg or .png file.") from None
