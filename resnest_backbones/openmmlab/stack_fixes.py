"""Narrow fixes for running mmengine-based training on this stack (CPU-only processes, torch >= 2.6 loading).

Applied by the framework adapters at import (see their docstrings).
"""
import atexit
import copyreg

import torch


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6 default) read the training checkpoints mmengine saves.

    mmengine 0.10 calls ``torch.load`` without ``weights_only``, so ``mim test`` / ``resume`` of its own checkpoints
    fails on the one non-tensor class they hold: the ``HistoryBuffer`` logs of its message hub. By default a buffer
    pickles its ``__dict__``, including the statistics functions it refers to, which pickle protocol 2 writes as
    ``getattr(HistoryBuffer, 'mean')``; allow-listing ``getattr`` would let a checkpoint reach any attribute of an
    allowed object. Instead, checkpoints saved after this import store a buffer as ``HistoryBuffer(log_history,
    count_history, max_length)`` (plain lists, a ``copyreg`` reduction, pickle's own extension point), and
    ``HistoryBuffer`` is allow-listed, with the numpy scalar reconstruction the message hub's ``eta`` (a
    ``numpy.float64``) needs. Checkpoints saved without this import keep failing with torch's message.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    numpy_core = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core to np._core
    torch.serialization.add_safe_globals([HistoryBuffer, numpy_core.multiarray.scalar, np.dtype,
                                          type(np.dtype(np.float64))])


def _reduce_history_buffer(buffer):
    logs, counts = buffer.data
    return type(buffer), (logs.tolist(), counts.tolist(), buffer.max_length)


def allow_cpu_distributed() -> None:
    """Let mmengine's ``--launcher pytorch`` start CPU-only processes (torchrun with the gloo backend).

    mmengine's ``init_dist`` calls ``torch.cuda.set_device(local_rank)`` unconditionally, which raises on a
    machine without an NVIDIA driver. Only when CUDA is unavailable is that call replaced by a no-op (it could only
    fail there); with a GPU nothing changes. Configs must also set ``env_cfg.dist_cfg.backend='gloo'`` and
    ``model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None)`` (DDP on CPU takes no device ids).
    """
    if torch.cuda.is_available() or getattr(torch.cuda.set_device, "_resnest_cpu_noop", False):
        return
    original = torch.cuda.set_device

    def set_device(device):
        if isinstance(device, torch.device) and device.type != "cuda":
            return original(device)
        # No CUDA here: a CUDA device index cannot be selected, and CPU processes do not need one.

    set_device._resnest_cpu_noop = True
    torch.cuda.set_device = set_device
    # mmengine's train.py never destroys its process group; with gloo on CPU the interpreter's exit then races
    # gloo's threads and sometimes aborts ("terminate called without an active exception") after a finished run.
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
