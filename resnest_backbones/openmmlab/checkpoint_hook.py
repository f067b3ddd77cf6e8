"""``AtomicCheckpointHook``: mmengine's ``CheckpointHook`` whose checkpoints survive a kill at any moment.

mmengine 0.10's ``CheckpointHook`` (1) with ``max_keep_ckpts`` deletes the oldest checkpoint *before* writing the
new one, (2) writes the new checkpoint straight to its final name and (3) rewrites ``last_checkpoint`` in place. A
run killed inside that sequence can be left with ``last_checkpoint`` naming a deleted file (``max_keep_ckpts=1``,
as the quick starts use: nothing left to resume from), a truncated ``iter_N.pth``, or an empty ``last_checkpoint``.

This subclass takes the same arguments and keeps every other behaviour. For a local ``out_dir`` it saves in a safe
order: the checkpoint goes to a hidden temporary file next to its final name, is flushed to disk and renamed into
place (``resnest_backbones.atomic_io``); then ``last_checkpoint`` is replaced atomically; only then are checkpoints
beyond ``max_keep_ckpts`` deleted. A kill at any point leaves ``last_checkpoint`` naming a complete checkpoint; the
temporary file of a killed save is removed at the next save.
Remote ``out_dir`` (``backend_args``) and ``save_best`` checkpoints (never named by ``last_checkpoint``) are
saved as mmengine saves them.

Config lines::

    custom_imports = dict(imports=['resnest_backbones.mmdet', 'resnest_backbones.openmmlab.checkpoint_hook'],
                          allow_failed_imports=False)
    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=500,
                                         max_keep_ckpts=1))
"""
import os

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ..atomic_io import atomic_write_text, commit, remove_abandoned_temporaries, temporary_name


class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) with crash-safe saving; see the module docstring."""

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        # The bookkeeping mmengine does (keep_ckpt_ids and last_ckpt in the message hub, which --resume restores),
        # with the deletion of the expired checkpoint moved after the new one is complete.
        expired = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        self.last_ckpt = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        temporary = temporary_name(self.last_ckpt)
        if is_main_process():
            remove_abandoned_temporaries(os.path.dirname(temporary))  # what a killed save left behind
        runner.save_checkpoint(os.path.dirname(temporary), os.path.basename(temporary), self.file_client_args,
                               save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                               meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():  # only the main process writes (Runner.save_checkpoint is master-only)
            return
        commit(temporary, self.last_ckpt)
        atomic_write_text(os.path.join(runner.work_dir, "last_checkpoint"), self.last_ckpt)
        if expired is not None:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(expired))
            if os.path.isfile(old) and old != self.last_ckpt:
                os.remove(old)


# mmengine's root registry (found from mmdet's and mmseg's too); idempotent under importlib.reload.
if HOOKS.get("AtomicCheckpointHook") is not AtomicCheckpointHook:
    HOOKS.register_module(name="AtomicCheckpointHook", module=AtomicCheckpointHook, force=True)

__all__ = ["AtomicCheckpointHook"]
