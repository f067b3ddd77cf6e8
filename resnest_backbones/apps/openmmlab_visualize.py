"""A legend above the drawings of mmdet's and mmseg's visualizers (ground truth | predictions, the score threshold,
the class colours), for the quick starts' ``<work_dir>/<time>/vis_data/vis_image/`` and ``mim test --show-dir``.

The framework's own visualizer draws the panels; ``LegendMixin`` only adds the strip on top before the drawing is
saved. Registered by ``mmdet_visualize.py`` / ``mmseg_visualize.py`` (configs: ``custom_imports`` and
``visualizer = dict(type='LegendDetLocalVisualizer')`` / ``'LegendSegLocalVisualizer'``). Application code: the
adapters do not import it.
"""
from typing import Optional

import mmcv
import numpy as np

from .legend import legend_strip, panel_titles


class LegendMixin:
    """Mixed in before an mmengine ``Visualizer`` subclass whose ``add_datasample`` ends in ``add_image`` (or
    ``mmcv.imwrite(out_file)``); the subclass names the data-sample fields its panels draw."""

    truth_field = ""  # e.g. 'gt_instances'
    prediction_field = ""  # e.g. 'pred_instances'
    _pending = None  # (titles, out_file) while add_datasample runs

    def add_datasample(self, name: str, image: np.ndarray, data_sample=None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: Optional[str] = None, step: int = 0, **kwargs) -> None:
        has = (lambda field: data_sample is not None and field in data_sample)
        titles = panel_titles(draw_gt and has(self.truth_field), draw_pred and has(self.prediction_field),
                              kwargs.get("pred_score_thr"))
        self._pending = (titles, out_file)
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
