"""Test-only fault injection for tests/test_faults.py: real SIGKILLs at chosen points of real training runs.

Chosen through environment variables, so the runs are the frameworks' own (``mim train`` with this module in the
config's ``custom_imports``, ``fault_train_net.py`` for detectron2); nothing of the frameworks is replaced.

- ``RESNEST_FAULT_KILL_AFTER_ITER=k``: SIGKILL once training iteration ``k`` (1-based) is done, after any
  checkpoint that iteration saved.
- ``RESNEST_FAULT_KILL_IN_SAVE_AT=k``: SIGKILL inside the write of the checkpoint saved at iteration ``k``: one
  extra entry of that checkpoint kills the process when ``torch.save`` pickles it, i.e. while the file is being
  written.
"""
import os
import signal

KILL_AFTER_ITER = "RESNEST_FAULT_KILL_AFTER_ITER"
KILL_IN_SAVE_AT = "RESNEST_FAULT_KILL_IN_SAVE_AT"


def _iteration(variable: str) -> int:
    return int(os.environ.get(variable, "0"))


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillWhenPickled:
    """Pickling this object kills the process: placed in a checkpoint, it kills in the middle of writing it."""

    def __reduce__(self):
        kill()


def kill_after(done: int) -> None:
    """Call after iteration ``done`` (1-based) completed."""
    if done == _iteration(KILL_AFTER_ITER):
        kill()


def saving_kills(done: int) -> bool:
    """Whether the checkpoint saved after iteration ``done`` (1-based) must kill the process while written."""
    return done == _iteration(KILL_IN_SAVE_AT)


try:  # mmengine runs import this module through custom_imports; detectron2 runs use fault_train_net.py
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS
except ImportError:  # pragma: no cover - the mmengine tests fail on their own then
    Hook = None

if Hook is not None:
    class FaultInjectionHook(Hook):
        """``custom_hooks=[dict(type='FaultInjectionHook')]``; after every other hook (the checkpoint hook too)."""

        priority = "LOWEST"

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            kill_after(runner.iter + 1)

        def before_save_checkpoint(self, runner, checkpoint):
            if saving_kills(checkpoint["meta"]["iter"]):
                checkpoint["fault"] = KillWhenPickled()

    if HOOKS.get("FaultInjectionHook") is None:
        HOOKS.register_module(module=FaultInjectionHook)
