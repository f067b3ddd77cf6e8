"""``LegendDetLocalVisualizer``: mmdet's ``DetLocalVisualizer`` with a legend above each drawing
(``openmmlab_visualize.py``). Config: ``custom_imports`` lists this module, ``visualizer =
dict(type='LegendDetLocalVisualizer')``."""
from mmdet.registry import VISUALIZERS
from mmdet.visualization import DetLocalVisualizer

from .openmmlab_visualize import LegendMixin


@VISUALIZERS.register_module()
class LegendDetLocalVisualizer(LegendMixin, DetLocalVisualizer):
    """Ground truth | predictions scoring at least the hook's ``score_thr``, with a legend naming both and the
    class colours (the dataset's ``palette``)."""

    truth_field = "gt_instances"
    prediction_field = "pred_instances"
