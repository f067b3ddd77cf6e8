"""Run a detector exported by ``tools/export_detectron2.py --format onnx`` with ONNX Runtime, and get what detectron2's
``DefaultPredictor`` returns. Needs numpy, onnxruntime and Pillow only: no torch, no detectron2. This file imports
nothing from its package, so it can be copied alone to a deployment machine (importing it through the package
``resnest_backbones`` would load the package's own ``__init__``, which imports torch).

    from resnest_backbones.onnx_runner import OnnxPredictor   # or, a copy of this file: from onnx_runner import ...
    predictor = OnnxPredictor("output/export/model.onnx")
    instances = predictor("image.jpg")   # or an HxWx3 uint8 array, BGR by default as DefaultPredictor takes it
    instances["pred_boxes"], instances["scores"], instances["pred_classes"], instances["pred_masks"]

    python resnest_backbones/onnx_runner.py output/export/model.onnx image.jpg   # one line per detection >= 0.5

Each step is detectron2's: ``read_image`` (EXIF orientation, then the model's channel order), ``ResizeShortestEdge``
to ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` with Pillow's bilinear resize, the exported model (normalisation,
backbone, proposals, heads, in the ONNX file), then ``detector_postprocess``: boxes scaled to the image and clipped,
empty boxes dropped, each 28x28 mask pasted into the image by bilinear sampling (``paste_masks_in_image``) and
thresholded. What the first and last steps need (sizes, channel order, class names, mask threshold) is stored in
the ONNX file's metadata under ``METADATA_KEY`` by the export.
"""
import argparse
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

try:
    import onnxruntime
except ImportError:  # reported when a predictor is created: the numpy helpers below work without it
    onnxruntime = None

METADATA_KEY = "resnest_backbones.detectron2"
INPUT_NAME = "image"
FORMATS = ("RGB", "BGR")
_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow >= 9.1 names it Image.Resampling.BILINEAR


def read_image(path: str, input_format: str) -> np.ndarray:
    """An HxWx3 uint8 array of the image file in ``input_format`` (``RGB`` or ``BGR``), as detectron2's
    ``read_image``: EXIF orientation applied, any mode (grey, palette, RGBA) converted to RGB first."""
    _check_format(input_format, "input_format")
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        array = np.asarray(image)
    return array[:, :, ::-1] if input_format == "BGR" else array


def resized_shape(height: int, width: int, short_edge: int, max_size: int) -> Tuple[int, int]:
    """``(new height, new width)`` of detectron2's ``ResizeShortestEdge.get_output_shape``: the short side to
    ``short_edge`` unless the long side would pass ``max_size``, rounded half up."""
    scale = short_edge * 1.0 / min(height, width)
    new_h, new_w = (short_edge, scale * width) if height < width else (scale * height, short_edge)
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_shortest_edge(image: np.ndarray, short_edge: int, max_size: int) -> np.ndarray:
    """detectron2's test-time ``ResizeShortestEdge([short_edge] * 2, max_size)`` of a uint8 HxWxC image: Pillow's
    bilinear resize (as ``ResizeTransform.apply_image``); ``short_edge`` 0 leaves the image as it is."""
    if short_edge == 0:
        return image
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], short_edge, max_size)
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), _BILINEAR))


def _interpolation_matrix(start: int, stop: int, low: np.float32, high: np.float32, size: int) -> np.ndarray:
    """Weights ``(stop - start, size)`` of bilinear sampling, with zeros outside, of a ``size``-long mask axis
    spanning ``[low, high]`` in image coordinates at the pixel centres ``start + 0.5 ... stop - 0.5``; the
    coordinates are computed in float32 as in detectron2's ``_do_paste_mask`` and ``grid_sample``."""
    centres = np.arange(start, stop, dtype=np.float32) + np.float32(0.5)
    grid = (centres - low) / (high - low) * np.float32(2) - np.float32(1)
    source = ((grid + np.float32(1)) * np.float32(size) - np.float32(1)) / np.float32(2)  # align_corners=False
    before = np.floor(source)
    weight_after = (source - before).astype(np.float64)
    weights = np.zeros((stop - start, size))
    rows = np.arange(stop - start)
    for index, weight in ((before, 1.0 - weight_after), (before + 1, weight_after)):
        inside = (index >= 0) & (index < size)
        weights[rows[inside], index[inside].astype(np.int64)] += weight[inside]
    return weights


def paste_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int, threshold: float = 0.5) -> np.ndarray:
    """detectron2's ``paste_masks_in_image``: each ``MxM`` mask of ``masks`` (N, M, M) stretched over its box
    (N, 4 as x0, y0, x1, y1 in image pixels) by bilinear sampling, zero outside; ``>= threshold`` gives the (N,
    height, width) boolean masks. Only the box's region (plus one pixel) is sampled, as detectron2 does on CPU."""
    pasted = np.zeros((len(masks), height, width), dtype=bool)
    for index, (mask, box) in enumerate(zip(masks, boxes.astype(np.float32))):
        x0, y0, x1, y1 = box
        left, top = max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0)
        right, bottom = min(int(np.ceil(x1)) + 1, width), min(int(np.ceil(y1)) + 1, height)
        if right <= left or bottom <= top:
            continue
        rows = _interpolation_matrix(top, bottom, y0, y1, mask.shape[0])
        columns = _interpolation_matrix(left, right, x0, x1, mask.shape[1])
        pasted[index, top:bottom, left:right] = rows @ mask.astype(np.float64) @ columns.T >= threshold
    return pasted


def postprocess(outputs: Dict[str, np.ndarray], output_size: Tuple[int, int], mask_threshold: float = 0.5) -> Dict:
    """detectron2's ``detector_postprocess`` of the exported model's outputs (boxes in the resized image, 28x28
    mask probabilities) to the image size ``(height, width)``: what ``DefaultPredictor`` returns as instances."""
    height, width = output_size
    resized_h, resized_w = (int(v) for v in outputs["image_size"])
    boxes = outputs["pred_boxes"].astype(np.float32).copy()
    boxes[:, 0::2] *= np.float32(width / resized_w)
    boxes[:, 1::2] *= np.float32(height / resized_h)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    result = {"pred_boxes": boxes[keep], "scores": outputs["scores"][keep],
              "pred_classes": outputs["pred_classes"][keep].astype(np.int64), "image_size": (height, width)}
    if "pred_masks" in outputs:
        result["pred_masks"] = paste_masks(outputs["pred_masks"][keep, 0], result["pred_boxes"], height, width,
                                           mask_threshold)
    return result


def _check_format(value: str, name: str) -> None:
    if value not in FORMATS:
        raise ValueError(f"{name} must be one of {FORMATS}, got {value!r}")


def _runtime_error(path: str, error: Exception) -> Exception:
    """A one-line error for an ONNX file ONNX Runtime cannot load: the op it lacks, or its first message line."""
    message = str(error)
    # The three ways ONNX Runtime names an op it has no kernel for: a type it does not implement, an unknown op of
    # the standard domain, an op of another domain.
    op = re.search(r"implementation for (\w+)\(|No Op registered for (\w+)|([\w.:]+)\(-?\d+\) is not a registered",
                   message)
    version = getattr(onnxruntime, "__version__", "?")
    if op:
        name = next(group for group in op.groups() if group)
        return RuntimeError(f"ONNX Runtime {version} cannot run op {name} of {path}: export "
                            "again with another --opset (tools/export_detectron2.py --opset N), or install an "
                            "onnxruntime that implements it")
    first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    return RuntimeError(f"ONNX Runtime {version} cannot load {path} ({first}); export it again with "
                        "tools/export_detectron2.py --format onnx")


def load_session(path: str, providers: Optional[Sequence[str]] = None):
    """An ``onnxruntime.InferenceSession`` of ``path`` (CPU unless ``providers``), with one-line errors for a
    missing onnxruntime, a missing file and a model the runtime cannot run."""
    if onnxruntime is None:
        raise ImportError("Running an ONNX model needs onnxruntime, which is not installed: pip install onnxruntime")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No ONNX model at {path}: write one with tools/export_detectron2.py --format onnx")
    try:
        return onnxruntime.InferenceSession(path, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as error:  # onnxruntime raises its own pybind classes (Fail, InvalidGraph, NotImplemented)
        raise _runtime_error(path, error) from None


class OnnxPredictor:
    """detectron2's ``DefaultPredictor`` for an exported ONNX detector, on numpy and ONNX Runtime.

    Args:
        path (str): ``model.onnx`` written by ``tools/export_detectron2.py --format onnx``.
        providers (list[str], optional): ONNX Runtime execution providers; default CPU.

    Attributes:
        class_names (list[str]): class names by index, as the dataset's ``thing_classes``.
        input_format, min_size_test, max_size_test, mask_threshold: the test-time settings of the exported config.
    """

    def __init__(self, path: str, providers: Optional[Sequence[str]] = None):
        self.session = load_session(path, providers)
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise ValueError(f"{path} has no {METADATA_KEY!r} metadata, so its pre-processing is unknown: export it "
                             "with tools/export_detectron2.py --format onnx")
        meta = json.loads(raw)
        self.input_format = meta["input_format"]
        self.min_size_test, self.max_size_test = int(meta["min_size_test"]), int(meta["max_size_test"])
        self.mask_threshold = float(meta["mask_threshold"])
        self.class_names: List[str] = list(meta["class_names"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, image: Union[str, os.PathLike, np.ndarray], input_format: str = "BGR") -> Dict:
        """Detections in one image: a path (read as detectron2 reads dataset images), or an HxWx3 uint8 array in
        ``input_format`` (BGR by default, as ``DefaultPredictor`` and ``cv2.imread``).

        Returns:
            dict: ``pred_boxes`` (N, 4) float32 x0, y0, x1, y1 in image pixels, ``scores`` (N,), ``pred_classes``
            (N,) int64, ``pred_masks`` (N, H, W) bool for mask models, ``image_size`` (H, W).
        """
        if isinstance(image, (str, os.PathLike)):
            original = read_image(os.fspath(image), self.input_format)
        else:
            original = self._as_model_format(image, input_format)
        resized = resize_shortest_edge(original, self.min_size_test, self.max_size_test)
        chw = np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32)
        outputs = dict(zip(self.output_names, self.session.run(None, {INPUT_NAME: chw})))
        return postprocess(outputs, original.shape[:2], self.mask_threshold)

    predict = __call__

    def _as_model_format(self, image, input_format: str) -> np.ndarray:
        _check_format(input_format, "input_format")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an HxWx3 uint8 array (or a file path), got shape {image.shape} dtype "
                             f"{image.dtype}; convert it with image.astype(np.uint8) or pass the file")
        return image[:, :, ::-1] if input_format != self.input_format else image


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python onnx_runner.py MODEL.onnx IMAGE [IMAGE ...] [--score-threshold S]``: one line per detection
    (image, class, score, box x0 y0 x1 y1); returns the exit status (an error is one line, status 1)."""
    parser = argparse.ArgumentParser(prog="onnx_runner", description="Detect objects with an ONNX detector written "
                                     "by tools/export_detectron2.py --format onnx (numpy and onnxruntime only).")
    parser.add_argument("model", help="model.onnx")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="print detections scoring at least this")
    args = parser.parse_args(argv)
    try:
        predictor = OnnxPredictor(args.model)
        for path in args.images:
            result = predictor(path)
            for box, score, label in zip(result["pred_boxes"], result["scores"], result["pred_classes"]):
                if score >= args.score_threshold:
                    names = predictor.class_names
                    print(f"{path}\t{names[label] if label < len(names) else label}\t{score:.4f}\t"
                          + " ".join(f"{v:.1f}" for v in box))
    except Exception as error:  # a user error is one line, not a traceback
        print(f"onnx_runner: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
