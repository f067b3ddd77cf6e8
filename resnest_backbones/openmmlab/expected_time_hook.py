"""``ExpectedTimeHook``: logs once, after the first 20 iterations of an iteration-based mmengine run, how long the whole
run will take on this machine (start-up, the remaining iterations, the validations still to come), so that a user on
a slower machine knows at once (``resnest_backbones.expected_time``). The quick-start configs select it.

Config lines (registered by importing ``resnest_backbones.openmmlab.runner``, or this module)::

    custom_imports = dict(imports=['resnest_backbones.mmseg', 'resnest_backbones.openmmlab.runner'],
                          allow_failed_imports=False)
    custom_hooks = [dict(type='ExpectedTimeHook')]       # after_iters=20
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..expected_time import FirstIterationsClock, evaluations_left, expected_time_message, process_seconds
from .registration import register


class ExpectedTimeHook(Hook):
    """Logs "Expected time: about N min on this machine (...)" after iteration ``after_iters`` of the run (or of its
    resumed part); iterations 2..``after_iters`` are timed.

    Args:
        after_iters (int): the iteration after which to log. Default: 20.
    """

    priority = "VERY_LOW"  # after the logger hook: the line follows mmengine's progress line of that iteration

    def __init__(self, after_iters: int = 20):
        self._clock = FirstIterationsClock(after_iters)
        self._start_iter = 0

    def before_train(self, runner) -> None:
        self._start_iter = runner.iter  # 0, or the resumed iteration

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None) -> None:
        done = runner.iter + 1  # runner.iter counts the iterations finished before this one
        seconds = self._clock.tick(done - self._start_iter)
        if seconds is None:
            return
        loop = runner.train_loop
        val_images, evaluations = 0, 0
        if getattr(loop, "val_interval", None) and runner.val_loop is not None:  # iteration-based, validating
            val_images = len(runner.val_loop.dataloader.dataset)
            evaluations = evaluations_left(done, runner.max_iters, loop.val_interval)
        loader = runner.train_dataloader  # batch_size is None with a batch sampler (mmdet's AspectRatioBatchSampler)
        batch = (loader.batch_size or getattr(loader.batch_sampler, "batch_size", 1)) * runner.world_size
        runner.logger.info(expected_time_message(seconds, self._clock.after_iters, done, runner.max_iters,
                                                 val_images, evaluations, batch, process_seconds()))


# mmengine's root registry: found from mmdet's and mmseg's child registries too.
register(HOOKS, ExpectedTimeHook)
