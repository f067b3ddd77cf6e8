"""How long a whole training run will take on this machine, measured on its first iterations: the line the quick
starts log ("Expected time: about 6.2 min on this machine ..."), so that a user on a slower machine knows at once.

Framework-free (standard library only): detectron2's trainer (``apps/detectron2_train.py``) and mmengine's
``ExpectedTimeHook`` (``openmmlab/expected_time_hook.py``) feed it iteration numbers and print its message.

The estimate: the time the process has run so far, plus the iterations left at the mean time of the timed ones, plus
the evaluations still to come (every ``period`` iterations and after the last, as both frameworks do), each held-out
image counted as ``EVAL_COST`` of a training image (a forward pass without the backward pass, plus decoding and the
metric). The first iteration is not timed: it also allocates buffers and fills caches.
"""
import os
import time
from typing import Optional

EVAL_COST = 0.5  # a held-out image's share of a training image's time (forward only; decoding and the metric)


def evaluations_left(done: int, max_iter: int, period: int) -> int:
    """Evaluations still to come after ``done`` of ``max_iter`` iterations when a run evaluates every ``period``
    iterations (0: never in between) and after its last iteration (mmengine's ``IterBasedTrainLoop``, detectron2's
    ``EvalHook``)."""
    between = (max_iter - 1) // period - done // period if period > 0 else 0  # multiples of period in (done, max)
    return max(between, 0) + 1


def process_seconds() -> Optional[float]:
    """Wall seconds since this process started (Linux ``/proc``), or None where that cannot be read."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            # Field 22 is the start time in clock ticks after boot; the command name (field 2) may hold spaces.
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return float(uptime.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


class FirstIterationsClock:
    """Times iterations 2..``after_iters`` of a run (counted from where it started or resumed).

    Call ``tick(done)`` after each iteration with the number of iterations done in this run; it returns the mean
    seconds per timed iteration once, right after iteration ``after_iters``, and None otherwise.
    """

    def __init__(self, after_iters: int = 20):
        if after_iters < 2:
            raise ValueError(f"after_iters must be at least 2 (the first iteration is not timed), got {after_iters}")
        self.after_iters = after_iters
        self._first_done = None

    def tick(self, done: int) -> Optional[float]:
        if done == 1:
            self._first_done = time.perf_counter()
        elif done == self.after_iters and self._first_done is not None:
            return (time.perf_counter() - self._first_done) / (self.after_iters - 1)
        return None


def expected_time_message(seconds_per_iteration: float, timed_iters: int, done: int, max_iter: int,
                          eval_images: int, evaluations: int, images_per_iteration: int,
                          elapsed: Optional[float], precise_bn_images: int = 0) -> str:
    """The line to log: expected minutes for the whole run and what the estimate is made of.

    Args:
        seconds_per_iteration: mean time of the timed iterations.
        timed_iters: the last timed iteration (iterations 2..timed_iters were timed).
        done: iterations finished (of ``max_iter``); ``max_iter``: the run's last iteration.
        eval_images: held-out images per evaluation; ``evaluations``: evaluations still to come.
        images_per_iteration: training images per iteration (all processes).
        elapsed: seconds the process has run so far (start-up included), or None if unknown.
        precise_bn_images: training images passed forward before each evaluation to recompute the BN statistics
            (detectron2's PreciseBN), counted as held-out images are.
    """
    forward_images = evaluations * (eval_images + precise_bn_images)
    training = (max_iter - done) * seconds_per_iteration
    evaluating = forward_images * EVAL_COST * seconds_per_iteration / max(images_per_iteration, 1)
    total = (elapsed or 0.0) + training + evaluating
    so_far = f"{elapsed:.0f} s so far" if elapsed is not None else "start-up not counted"
    plural = "s" if evaluations > 1 else ""
    evaluated = f"{evaluations} evaluation{plural} of {eval_images} images" if evaluations else "no evaluation"
    if evaluations and precise_bn_images:
        evaluated += f" (each after {precise_bn_images} images for PreciseBN)"
    return (f"Expected time: about {total / 60:.1f} min on this machine ({seconds_per_iteration:.2f} s per iteration "
            f"over iterations 2-{timed_iters}; {max_iter} iterations, {evaluated}, {so_far})")
