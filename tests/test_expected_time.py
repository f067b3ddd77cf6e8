"""The expected-time line of the quick starts ("Expected time: about N min on this machine ..."), logged once after
the first 20 iterations: its arithmetic, and the hooks in real training loops (mmengine's ``Runner`` with
``ExpectedTimeHook``, detectron2's ``SimpleTrainer`` with the trainer's hook) on a model whose step takes a known
time. The quick starts themselves log it too (tests/test_mmseg_mim.py, tests/test_detectron2_train.py)."""
import logging
import re
import time

import pytest
import torch
from torch import nn

from resnest_backbones.expected_time import (EVAL_COST, FirstIterationsClock, evaluations_left,
                                             expected_time_message, process_seconds)

STEP = 0.03  # seconds each training step of the toy models sleeps
LINE = re.compile(r"Expected time: about ([\d.]+) min on this machine \(([\d.]+) s per iteration over iterations "
                  r"2-(\d+); (\d+) iterations, (.*), (\d+) s so far\)")


def _reference_evaluations(done, max_iter, period):
    """What mmengine's IterBasedTrainLoop and detectron2's EvalHook do, iteration by iteration."""
    return sum(1 for it in range(done + 1, max_iter + 1) if (period > 0 and it % period == 0) or it == max_iter)


@pytest.mark.parametrize("done,max_iter,period", [(20, 520, 520), (20, 520, 0), (20, 100, 10), (20, 105, 10),
                                                  (25, 30, 7), (0, 10, 1), (9, 10, 3)])
def test_evaluations_left_counts_as_the_loops_evaluate(done, max_iter, period):
    assert evaluations_left(done, max_iter, period) == _reference_evaluations(done, max_iter, period)


def test_message_adds_start_up_iterations_and_evaluation():
    # 30 s so far + 500 iterations at 0.5 s + 12 images at EVAL_COST of a training image (2 per iteration).
    expected = (30 + 500 * 0.5 + 12 * EVAL_COST * 0.5 / 2) / 60
    line = expected_time_message(0.5, 20, 20, 520, 12, 1, 2, 30.0)
    match = LINE.fullmatch(line)
    assert match and float(match.group(1)) == pytest.approx(expected, abs=0.05)
    assert match.group(5) == "1 evaluation of 12 images" and match.group(4) == "520"
    assert "3 evaluations of 5 images" in expected_time_message(0.5, 20, 20, 520, 5, 3, 2, 30.0)
    assert "no evaluation, start-up not counted" in expected_time_message(0.5, 20, 20, 520, 0, 0, 2, None)
    # detectron2's PreciseBN: 200 batches of 2 training images passed forward before the evaluation.
    line = expected_time_message(0.5, 20, 20, 520, 12, 1, 2, 30.0, precise_bn_images=400)
    match = LINE.fullmatch(line)
    assert match and match.group(5) == "1 evaluation of 12 images (each after 400 images for PreciseBN)"
    assert float(match.group(1)) == pytest.approx((30 + 500 * 0.5 + 412 * EVAL_COST * 0.5 / 2) / 60, abs=0.05)


def test_clock_times_iterations_after_the_first():
    clock = FirstIterationsClock(after_iters=4)
    assert clock.tick(1) is None
    start = time.perf_counter()
    for done in (2, 3):
        time.sleep(STEP)
        assert clock.tick(done) is None
    time.sleep(STEP)
    measured = clock.tick(4)
    assert STEP <= measured <= (time.perf_counter() - start) / 3 + 1e-6
    assert clock.tick(5) is None and clock.tick(4) is not None  # once per run, unless iteration 4 comes again
    with pytest.raises(ValueError, match="after_iters must be at least 2"):
        FirstIterationsClock(1)


def test_process_seconds_counts_from_the_process_start():
    seconds = process_seconds()
    assert seconds is not None and 0 < seconds < time.monotonic() + 1


class _SlowToy(nn.Module):
    """One parameter; each forward sleeps STEP seconds, as a training step of known length."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, *args, **kwargs):
        time.sleep(STEP)
        return {"loss": (self.weight - 1).pow(2).sum()}


class _Lines(logging.Handler):
    """Records (time, the loop's 0-based iteration, message) of each log line."""

    def __init__(self, iteration):
        super().__init__()
        self.iteration = iteration
        self.lines = []

    def emit(self, record):
        text = record.getMessage()  # the iteration only for ours: reading it earlier can build (and log) the loop
        self.lines.append((time.perf_counter(), self.iteration() if text.startswith("Expected") else None, text))


def _check_line(lines, max_iter, evaluated, finished):
    """One expected-time line, logged during iteration 20 (index 19), whose remaining time matches what the rest
    of the run took."""
    found = [(when, at, LINE.fullmatch(text)) for when, at, text in lines if text.startswith("Expected time")]
    assert len(found) == 1, lines
    when, at, match = found[0]
    assert match and at == 19, found[0]
    assert match.group(3) == "20" and match.group(4) == str(max_iter) and match.group(5) == evaluated
    seconds = float(match.group(2))
    assert STEP <= seconds < 5 * STEP  # the sleep, plus a little work (a loaded machine may add more)
    # The estimate's iterations part, recomputed from its own s/iteration, against the time the rest really took.
    assert (max_iter - 20) * seconds == pytest.approx(finished - when, rel=0.5)


def test_mmengine_runner_logs_it_once_after_iteration_20(tmp_path):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    import resnest_backbones.openmmlab.runner  # noqa: F401  registers ExpectedTimeHook, as custom_imports does

    class Model(BaseModel):
        def __init__(self):
            super().__init__()
            self.toy = _SlowToy()

        def forward(self, inputs, data_samples=None, mode="tensor"):
            return self.toy()

    runner = Runner(model=Model(), work_dir=str(tmp_path), experiment_name="expected_time",
                    train_dataloader=dict(dataset=[dict(inputs=torch.zeros(1))] * 8, sampler=dict(type="InfiniteSampler"),
                                          batch_size=2, collate_fn=dict(type="default_collate")),
                    train_cfg=dict(by_epoch=False, max_iters=40),
                    optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
                    custom_hooks=[dict(type="ExpectedTimeHook")], default_hooks=dict(checkpoint=None))
    handler = _Lines(lambda: runner.iter)
    runner.logger.addHandler(handler)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(handler)
    _check_line(handler.lines, 40, "no evaluation", time.perf_counter())


def test_detectron2_trainer_hook_logs_it_once_after_iteration_20():
    from detectron2.engine import SimpleTrainer

    from resnest_backbones.apps.detectron2_train import ExpectedTimeHook

    model = _SlowToy()
    data = iter(lambda: [{}], None)  # an endless loader of one empty record per batch
    trainer = SimpleTrainer(model, data, torch.optim.SGD(model.parameters(), lr=0.01))
    trainer.register_hooks([ExpectedTimeHook(eval_datasets=(), eval_period=0, images_per_iteration=2)])
    logger = logging.getLogger("detectron2.resnest_backbones")
    handler, level = _Lines(lambda: trainer.iter), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        trainer.train(0, 40)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    _check_line(handler.lines, 40, "no evaluation", time.perf_counter())
