"""The tolerances of the project's ONNX checks (an exported model against the PyTorch one, image by image), one set
for the detectron2 check (``detectron2_onnx``) and the OpenMMLab one (``openmmlab_onnx``). Numpy only, so each check
imports it without the other framework."""
import numpy as np

BOX_PX = 0.5  # largest coordinate difference of a matched box, pixels
SCORE = 1e-4  # score difference of a matched detection
MASK_IOU = 0.99  # per-instance mask IoU
# A pasted mask pixel whose probability is within float rounding (~1e-6) of the 0.5 threshold can fall either way;
# on a mask of under 100 pixels one such pixel takes the IoU below 0.99. Up to this many differing pixels pass.
MASK_ROUNDING_PIXELS = 2
LOGITS_RELATIVE = 1e-4  # segmentation logits, relative to their largest magnitude


def mask_iou(a, b) -> float:
    """Intersection over union of two boolean masks (numpy arrays or CPU tensors; 1 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def masks_agree(a, b) -> bool:
    """IoU >= ``MASK_IOU``, or at most ``MASK_ROUNDING_PIXELS`` pixels apart."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return mask_iou(a, b) >= MASK_IOU or int(np.logical_xor(a, b).sum()) <= MASK_ROUNDING_PIXELS


__all__ = ["BOX_PX", "LOGITS_RELATIVE", "MASK_IOU", "MASK_ROUNDING_PIXELS", "SCORE", "mask_iou", "masks_agree"]
