"""mmengine training checkpoints and torch's weights-only unpickler (``torch.load`` default since torch 2.6).

An mmengine 0.10 checkpoint holds, besides tensors, its message hub's ``HistoryBuffer`` logs (numpy arrays) and
numpy scalars (``eta``, ``best_score``); ``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')`` calls. Two narrow answers, neither widening what any other load accepts:

- :func:`mmengine_checkpoint_globals`: a context manager allowing exactly those globals for torch's weights-only
  unpickler, as the core's restricted unpickler (``resnest_backbones.safe_pickle``) resolves them: ``getattr`` is
  its restricted one, which reaches only ``HistoryBuffer``'s four statistics methods (the real ``getattr`` would
  let a crafted file reach any attribute of an allowed object). For the loads mmengine itself makes
  (``SafeRunner.load_checkpoint``); this package's own loaders use ``safe_pickle`` directly;
- :func:`to_plain` / :func:`from_plain`: the same content as plain data, so checkpoints saved that way load with a
  bare ``torch.load`` (``WeightsOnlyCheckpointHook`` applies them when saving and after loading).
"""
import contextlib
import copy
from typing import Any, Iterator

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ..safe_pickle import resolve_global

# What an mmengine 0.10 training checkpoint names besides torch's own globals (numpy 2 and 1.x spellings). Each is
# resolved by the core's restricted unpickler (``safe_pickle``), so the decision what a file may reach is made once:
# ``builtins.getattr`` resolves to its getattr restricted to HistoryBuffer's statistics methods.
_MMENGINE_GLOBALS = [("mmengine.logging.history_buffer", "HistoryBuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
                     ("builtins", "getattr")] + [(f"numpy.{core}.multiarray", name) for core in ("_core", "core")
                                                for name in ("_reconstruct", "scalar")]
_HISTORY_BUFFER = "mmengine.logging.HistoryBuffer"  # marker of a HistoryBuffer saved as plain data


def _allowed_globals() -> list:
    numeric = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
               np.float16, np.float32, np.float64)
    # torch's unpickler also checks the class of each numpy dtype it rebuilds (BUILD on Float64DType, ...).
    return [(resolve_global(module, name), f"{module}.{name}") for module, name in _MMENGINE_GLOBALS] + \
        sorted({type(np.dtype(t)) for t in numeric}, key=str)


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """Within the block, ``torch.load(weights_only=True)`` also reads mmengine's message-hub state (see module
    docstring); outside it, torch's allow-list is what it was."""
    with torch.serialization.safe_globals(_allowed_globals()):
        yield


def to_plain(obj: Any) -> Any:
    """``obj`` with every ``HistoryBuffer`` as a marked dict of lists and numpy values as Python numbers/lists;
    containers are copied, tensors and other values kept as they are."""
    if isinstance(obj, HistoryBuffer):
        logs, counts = obj.data
        return {_HISTORY_BUFFER: True, "log_history": logs.tolist(), "count_history": counts.tolist(),
                "max_length": obj.max_length}
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    return _map(obj, to_plain)


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain` for the ``HistoryBuffer`` logs (numpy values stay Python numbers)."""
    if isinstance(obj, dict) and obj.get(_HISTORY_BUFFER) is True:
        return HistoryBuffer(obj["log_history"], obj["count_history"], obj["max_length"])
    return _map(obj, from_plain)


def _map(obj: Any, convert) -> Any:
    """``convert`` applied to the values of a dict (any dict type: a shallow copy keeps it), list or tuple."""
    if isinstance(obj, dict):
        copied = copy.copy(obj)
        for key, value in obj.items():
            copied[key] = convert(value)
        return copied
    if type(obj) in (list, tuple):
        return type(obj)(convert(value) for value in obj)
    return obj
