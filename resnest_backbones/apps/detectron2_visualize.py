"""Held-out images drawn for a person to judge a detector: ground truth on the left, the predictions that pass a
score threshold on the right, both drawn by detectron2's ``Visualizer`` with one colour per class, and a legend
above them (which side is which, the threshold, the class colours).

Application code (``tools/train_net.py`` calls it after evaluating); importing an adapter does not import it.
"""
import logging
import os
from typing import List

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.structures import Instances
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer
from PIL import Image

from .legend import legend_strip

logger = logging.getLogger("detectron2.resnest_backbones")
SEPARATOR = 4  # black pixels between the two panels


def drawing_metadata(dataset_name: str) -> Metadata:
    """The dataset's class names with one colour per class (its ``thing_colors``, else detectron2's colormap), so
    that both panels and the legend agree; detectron2 otherwise picks a random colour per instance."""
    source = MetadataCatalog.get(dataset_name)
    classes = list(source.thing_classes)
    colors = source.get("thing_colors")
    if not colors:
        palette = colormap(rgb=True, maximum=255)
        colors = [tuple(int(c) for c in palette[i % len(palette)]) for i in range(len(classes))]
    return Metadata(name=f"{dataset_name} (drawing)", thing_classes=classes, thing_colors=[tuple(c) for c in colors])


def draw_side_by_side(image_rgb: np.ndarray, record: dict, instances: Instances, metadata: Metadata,
                      score_threshold: float, scale: float = 2.0) -> np.ndarray:
    """One drawing: legend on top, ``record``'s annotations (left) beside ``instances`` scoring at least
    ``score_threshold`` (right).

    Args:
        image_rgb: the image, ``H x W x 3`` uint8 RGB, in the coordinates of ``record`` and ``instances``.
        record: its detectron2 dataset dict (``annotations`` with boxes, masks and ``category_id``).
        instances: the model's predictions for it (``pred_boxes``, ``scores``, ``pred_classes``, masks).
        metadata: ``drawing_metadata(dataset_name)``.
        score_threshold: predictions below it are left out (and the legend says so).
        scale: drawing scale of both panels.

    Returns:
        The drawing, ``(legend + H * scale) x (2 * W * scale + SEPARATOR) x 3`` uint8 RGB.
    """
    instances = instances[instances.scores >= score_threshold]
    # detectron2 jitters each instance's colour with numpy's global RNG: a fixed seed makes the drawing depend on
    # its inputs only, and the caller's RNG state is put back.
    state = np.random.get_state()
    try:
        np.random.seed(0)
        left = Visualizer(image_rgb, metadata, scale=scale, instance_mode=ColorMode.SEGMENTATION) \
            .draw_dataset_dict(record).get_image()
        np.random.seed(0)
        right = Visualizer(image_rgb, metadata, scale=scale, instance_mode=ColorMode.SEGMENTATION) \
            .draw_instance_predictions(instances).get_image()
    finally:
        np.random.set_state(state)
    gap = np.zeros((left.shape[0], SEPARATOR, 3), dtype=np.uint8)
    titles = ["ground truth", f"predictions with score >= {score_threshold:.2f} ({len(instances)})"]
    legend = legend_strip(2 * left.shape[1] + SEPARATOR, titles, metadata.thing_classes, metadata.thing_colors)
    return np.concatenate([legend, np.concatenate([left, gap, right], axis=1)], axis=0)


@torch.no_grad()
def visualize_predictions(cfg, model: torch.nn.Module, dataset_name: str, count: int, out_dir: str,
                          score_threshold: float = 0.5) -> List[str]:
    """Draw the first ``count`` images of ``dataset_name`` (``draw_side_by_side``) into ``out_dir`` as PNG.

    Args:
        cfg: the detectron2 config (input format and test size).
        model: the detector; evaluated in eval mode, its mode is restored afterwards.
        dataset_name: a registered dataset with annotations.
        count: how many images.
        out_dir: where the PNG files go (created).
        score_threshold: predictions scoring below it are not drawn. The model has already dropped those below
            ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``, so the legend states the larger of the two.

    Returns:
        The paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    threshold = max(score_threshold, cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
    metadata = drawing_metadata(dataset_name)
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    was_training = model.training
    model.eval()
    paths = []
    try:
        for record in DatasetCatalog.get(dataset_name)[:max(count, 0)]:
            image = read_image(record["file_name"], format=cfg.INPUT.FORMAT)
            resized = resize.get_transform(image).apply_image(image)
            inputs = {"image": torch.as_tensor(resized.transpose(2, 0, 1).copy()), "height": image.shape[0],
                      "width": image.shape[1]}
            instances = model([inputs])[0]["instances"].to("cpu")
            rgb = image if cfg.INPUT.FORMAT == "RGB" else image[:, :, ::-1]
            drawing = draw_side_by_side(np.ascontiguousarray(rgb), record, instances, metadata, threshold)
            path = os.path.join(out_dir, os.path.splitext(os.path.basename(record["file_name"]))[0] + ".png")
            Image.fromarray(drawing).save(path)
            paths.append(path)
    finally:
        model.train(was_training)
    logger.info(f"Saved {len(paths)} drawings to {out_dir}: ground truth (left) beside the predictions with score "
                f">= {threshold:.2f} (right)")
    return paths
