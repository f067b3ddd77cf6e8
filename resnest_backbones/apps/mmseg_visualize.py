"""``LegendSegLocalVisualizer``: mmseg's ``SegLocalVisualizer`` with a legend above each drawing
(``openmmlab_visualize.py``). Config: ``custom_imports`` lists this module, ``visualizer =
dict(type='LegendSegLocalVisualizer')``."""
from mmseg.registry import VISUALIZERS
from mmseg.visualization import SegLocalVisualizer

from .openmmlab_visualize import LegendMixin


@VISUALIZERS.register_module()
class LegendSegLocalVisualizer(LegendMixin, SegLocalVisualizer):
    """Ground truth | predicted segmentation, with a legend naming both and the class colours (the dataset's
    ``palette``)."""

    truth_field = "gt_sem_seg"
    prediction_field = "pred_sem_seg"
