"""A legend above the drawings of mmdet's and mmseg's visualizers (ground truth | predictions, the score threshold,
the class colours), for the quick starts' ``<work_dir>/<time>/vis_data/vis_image/`` and ``mim test --show-dir``.

The framework's own visualizer draws the panels; ``LegendMixin`` enlarges small inputs first and adds the strip on
top before the drawing is saved. Enlarging: an image narrower than ``min_panel_width`` (512 px) is drawn ``k`` times
larger (the smallest whole ``k`` that reaches it), pixels repeated (nearest neighbour), with the boxes, masks and
label maps scaled to match; the framework then draws its labels, scores and lines at their usual pixel sizes, which
on a 128-pixel image covered the shapes they name. Registered by ``mmdet_visualize.py`` / ``mmseg_visualize.py`` (configs: ``custom_imports`` and
``visualizer = dict(type='LegendDetLocalVisualizer')`` / ``'LegendSegLocalVisualizer'``). Application code: the
adapters do not import it.
"""
import math
from typing import Optional

import mmcv
import numpy as np
import torch
from mmengine.structures import BaseDataElement, InstanceData, PixelData

from .legend import legend_strip, panel_titles


class LegendMixin:
    """Mixed in before an mmengine ``Visualizer`` subclass whose ``add_datasample`` ends in ``add_image`` (or
    ``mmcv.imwrite(out_file)``); the subclass names the data-sample fields its panels draw."""

    truth_field = ""  # e.g. 'gt_instances'
    prediction_field = ""  # e.g. 'pred_instances'
    _pending = None  # (titles, out_file) while add_datasample runs

    def __init__(self, name: str = "visualizer", *args, min_panel_width: int = 512, **kwargs):
        """The framework visualizer's arguments, and ``min_panel_width``: panels narrower than this many pixels
        are drawn on the input enlarged a whole number of times by nearest neighbour (0: never enlarge)."""
        super().__init__(name, *args, **kwargs)
        if min_panel_width < 0:
            raise ValueError(f"min_panel_width must be >= 0 (0: draw at the input's size), got {min_panel_width}")
        self.min_panel_width = min_panel_width

    def add_datasample(self, name: str, image: np.ndarray, data_sample=None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: Optional[str] = None, step: int = 0, **kwargs) -> None:
        has = (lambda field: data_sample is not None and field in data_sample)
        titles = panel_titles(draw_gt and has(self.truth_field), draw_pred and has(self.prediction_field),
                              kwargs.get("pred_score_thr"))
        self._pending = (titles, out_file)
        factor = math.ceil(self.min_panel_width / image.shape[1]) if self.min_panel_width else 1
        if factor > 1:
            image = enlarge(image, factor, axes=(0, 1))
            data_sample = enlarge_sample(data_sample, factor) if data_sample is not None else None
        try:
            # The framework's drawing, saved by our add_image (out_file handled there, shown there).
            super().add_datasample(name, image, data_sample, draw_gt=draw_gt, draw_pred=draw_pred, show=False,
                                   wait_time=wait_time, out_file=None, step=step, **kwargs)
        finally:
            self._pending = None
        if show:
            self.show(self.get_image(), win_name=name, wait_time=wait_time)

    def add_image(self, name: str, image: np.ndarray, step: int = 0) -> None:
        if self._pending is None:  # a direct call, not from add_datasample
            return super().add_image(name, image, step)
        titles, out_file = self._pending
        meta = self.dataset_meta or {}
        classes = list(meta.get("classes") or [])
        palette = [tuple(c) for c in (meta.get("palette") or [])][:len(classes)]
        if len(palette) < len(classes):
            classes = []  # no colours to show: titles only
        drawing = np.concatenate([legend_strip(image.shape[1], titles, classes, palette), image], axis=0)
        self.set_image(drawing)
        if out_file is not None:
            mmcv.imwrite(drawing[..., ::-1], out_file)  # RGB -> BGR, as the frameworks write it
        else:
            super().add_image(name, drawing, step)


def enlarge(array, factor: int, axes=(-2, -1)):
    """``array`` (numpy or torch) with each element repeated ``factor`` times along both ``axes``: nearest-neighbour
    enlargement by a whole factor."""
    for axis in axes:
        array = (array.repeat_interleave(factor, dim=axis) if isinstance(array, torch.Tensor)
                 else np.repeat(array, factor, axis=axis))
    return array


def enlarge_sample(sample: BaseDataElement, factor: int) -> BaseDataElement:
    """A copy of an mmdet / mmseg data sample drawn ``factor`` times larger: its instances' ``bboxes`` and ``masks``
    and its pixel maps (``gt_sem_seg``, ``pred_sem_seg``, panoptic maps) scaled; everything else as it was."""
    fields = dict(sample.items())
    for key, value in fields.items():
        if isinstance(value, InstanceData):
            fields[key] = _enlarge_instances(value, factor)
        elif isinstance(value, PixelData):
            fields[key] = value.new(**{name: enlarge(data, factor) for name, data in value.items()})
    return sample.new(**fields)


def _enlarge_instances(instances: InstanceData, factor: int) -> InstanceData:
    fields = dict(instances.items())
    if "bboxes" in fields:  # a tensor of x1y1x2y2 pixel coordinates, or mmdet's box type
        boxes = fields["bboxes"]
        fields["bboxes"] = boxes * factor if isinstance(boxes, torch.Tensor) else boxes.clone().rescale_(
            (factor, factor))
    if "masks" in fields:  # N x H x W tensor or array, or mmdet's BitmapMasks / PolygonMasks
        masks = fields["masks"]
        fields["masks"] = masks.rescale(factor) if hasattr(masks, "rescale") else enlarge(masks, factor)
    return instances.new(**fields)
