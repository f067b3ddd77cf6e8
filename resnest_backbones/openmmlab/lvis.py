"""``NumpyCompatLVISMetric``: mmdet's ``LVISMetric`` that evaluates on numpy >= 1.24 (registered in mmdet's
``METRICS`` on import; nothing else changes).

The ``lvis`` package (0.5.3, its latest release) uses ``np.float``, removed in numpy 1.24. This metric restores the
alias only while it computes its metrics (``compat.lvis_on_numpy2``). Config lines::

    custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.openmmlab.lvis'],
                          allow_failed_imports=False)
    val_evaluator = dict(type='NumpyCompatLVISMetric', ann_file=..., metric=['bbox', 'segm'])
"""
from mmdet.evaluation import LVISMetric
from mmdet.registry import METRICS

from ..compat import lvis_on_numpy2
from .registration import register


class NumpyCompatLVISMetric(LVISMetric):
    """``LVISMetric`` (same arguments and results) with ``np.float`` defined during ``compute_metrics`` only."""

    def compute_metrics(self, results: list) -> dict:
        with lvis_on_numpy2():
            return super().compute_metrics(results)


register(METRICS, NumpyCompatLVISMetric)
