"""Opt-in stack fixes for mmengine runs, selected from a config (importing this module only registers them):

- ``runner_type = 'SafeRunner'``: mmengine's ``Runner``, plus
  (a) CPU-only ``--launcher pytorch`` runs: on a machine without CUDA it starts the process group itself with gloo,
  so mmengine's ``init_dist`` (which calls ``torch.cuda.set_device`` unconditionally) is never reached, wraps the
  model in DDP without device ids, and destroys the group at exit (mmengine's tools never do; gloo's threads then
  race the interpreter's exit);
  (b) ``load_from`` / ``--resume`` of mmengine training checkpoints under torch's weights-only ``torch.load``,
  with the scoped allow-list of ``mmengine_checkpoints`` around exactly those loads;
  (c) one training per work dir: ``train()`` holds the work dir's run lock (``resnest_backbones.ownership``), so a
  second training into the work dir of a live one is refused before it writes there (the config dump that
  mmengine writes while the runner is built waits for ``train`` / ``val`` / ``test``).
- ``custom_hooks = [dict(type='WeightsOnlyCheckpointHook')]``: the checkpoints the run saves hold plain data
  (message-hub logs as lists), so any weights-only ``torch.load`` reads them, e.g. mmseg's ``tools/test.py``, which
  ignores ``runner_type``; loading converts them back for ``--resume``.
- ``default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', ...))``: mmengine's ``CheckpointHook`` with
  crash-safe saving (``checkpoint_hook.py``; registered by importing this module too).
- ``custom_hooks = [dict(type='ExpectedTimeHook')]``: logs the expected time of the whole run on this machine after
  its first 20 iterations (``expected_time_hook.py``; registered by importing this module too).

Config lines (docs/openmmlab.md)::

    custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.openmmlab.runner'],
                          allow_failed_imports=False)
    runner_type = 'SafeRunner'
    custom_hooks = [dict(type='WeightsOnlyCheckpointHook')]
"""
import atexit
import datetime
import os
from typing import Dict, Optional

import torch
import torch.distributed as dist
from mmengine.dist import broadcast_object_list, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS, RUNNERS
from mmengine.runner import Runner
from torch import nn

from ..ownership import RunLock, acquire_in_main_process
from . import checkpoint_hook  # noqa: F401  registers AtomicCheckpointHook for the configs that select it
from . import expected_time_hook  # noqa: F401  registers ExpectedTimeHook (the quick starts' time estimate)
from .mmengine_checkpoints import from_plain, mmengine_checkpoint_globals, to_plain
from .registration import register


class SafeRunner(Runner):
    """mmengine's ``Runner`` with CPU-only distributed start and scoped weights-only checkpoint loading (module
    docstring). With CUDA, or without a launcher, it behaves exactly as ``Runner``."""

    def setup_env(self, env_cfg: Dict) -> None:
        if self.distributed and not dist.is_initialized() and self._cpu_only():
            self._init_cpu_process_group(env_cfg.get("dist_cfg", {}))
        super().setup_env(env_cfg)  # sees the group initialised and skips init_dist

    def _cpu_only(self) -> bool:
        return self.launcher == "pytorch" and not torch.cuda.is_available()

    def _init_cpu_process_group(self, dist_cfg: Dict) -> None:
        """What mmengine's ``init_dist('pytorch', **dist_cfg)`` does, minus the CUDA device selection; gloo is the
        one backend of torch.distributed that runs on CPU tensors, so an ``nccl`` in the config is replaced."""
        options = {key: value for key, value in dist_cfg.items() if key != "backend"}
        if options.get("timeout") is not None:
            options["timeout"] = datetime.timedelta(seconds=options["timeout"])
        if torch.multiprocessing.get_start_method(allow_none=True) is None:
            torch.multiprocessing.set_start_method("spawn")
        dist.init_process_group("gloo", init_method="env://", rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]), **options)
        atexit.register(_destroy_process_group)

    def wrap_model(self, model_wrapper_cfg: Optional[Dict], model: nn.Module) -> nn.Module:
        if self.distributed and self._cpu_only() and model_wrapper_cfg is None:
            # mmengine's default wrapper passes device_ids=[LOCAL_RANK], which DDP refuses for CPU modules.
            model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=self.cfg.get("find_unused_parameters", False))
        return super().wrap_model(model_wrapper_cfg, model)

    def dump_config(self) -> None:
        """Deferred from ``__init__`` to the start of ``train`` / ``val`` / ``test``: a training refused because
        another run holds the work dir must not replace that run's config dump."""
        self._config_dump_pending = True

    def _dump_config_now(self) -> None:
        if getattr(self, "_config_dump_pending", False):
            self._config_dump_pending = False
            super().dump_config()

    def train(self) -> nn.Module:
        """``Runner.train`` holding the work dir's run lock (``resnest_backbones.ownership``): a second training
        into the work dir of a live one is refused before it writes anything there."""
        lock = hold_work_dir(self.work_dir)
        try:
            self._dump_config_now()
            return super().train()
        finally:
            if lock is not None:
                lock.release()

    def val(self):
        self._dump_config_now()
        return super().val()

    def test(self):
        self._dump_config_now()
        return super().test()

    def load_checkpoint(self, filename: str, *args, **kwargs):
        """``Runner.load_checkpoint`` (used by ``load_from`` and ``resume``) with mmengine's own checkpoint
        contents allowed for the weights-only unpickler during this call only."""
        with mmengine_checkpoint_globals():
            return super().load_checkpoint(filename, *args, **kwargs)


def hold_work_dir(work_dir: str) -> Optional[RunLock]:
    """Take ``work_dir``'s run lock in the main process; every process raises if the main one could not. The
    takeover of an ended run's lock is logged."""
    def share(message: Optional[str]) -> Optional[str]:
        shared = [message]
        if get_world_size() > 1:
            broadcast_object_list(shared)
        return shared[0]
    lock = acquire_in_main_process(work_dir, "--work-dir", is_main_process(), share)
    if lock is not None and lock.taken_over is not None:
        print_log(lock.describe_takeover(), logger="current")
    return lock


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class WeightsOnlyCheckpointHook(Hook):
    """Saves checkpoints whose message-hub logs and numpy values are plain data (readable by a bare weights-only
    ``torch.load``); restores the logs when such a checkpoint is loaded (``--resume``). Runs after the other hooks
    have added their entries."""

    priority = "LOWEST"

    def before_save_checkpoint(self, runner, checkpoint: Dict) -> None:
        for key in checkpoint:
            if key != "state_dict":  # the weights are tensors already
                checkpoint[key] = to_plain(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        if "message_hub" in checkpoint:
            checkpoint["message_hub"] = from_plain(checkpoint["message_hub"])


# mmengine's root registries: found from mmdet's and mmseg's child registries too (their tools use either).
register(RUNNERS, SafeRunner)
register(HOOKS, WeightsOnlyCheckpointHook)
