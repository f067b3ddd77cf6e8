"""Restricted unpickling: checkpoint files are read as data, never as code.

Unpickling calls whatever functions a file names, so a crafted file runs code while it loads. This module's
:class:`Unpickler` resolves only the globals listed here and refuses every other one with
:class:`ForbiddenGlobalError`, which names the global. What it allows:

- plain containers: ``OrderedDict``, ``Counter``, ``set``, ``frozenset``, ``complex``, ``bytearray``, ``slice`` and
  ``_codecs.encode`` (how protocol 2 stores ``bytes``);
- numpy arrays, dtypes and scalars (Detectron1 / Caffe2 ``.pkl`` weights, numbers logged by mmengine);
- tensors: the rebuild functions ``torch.save`` writes, ``torch.Size``, ``torch.device``, dtypes and layouts (the set
  ``torch.load(weights_only=True)`` allows);
- mmengine's ``HistoryBuffer`` (the logs in an mmengine training checkpoint's ``message_hub``). Its pickle refers to
  the buffer's statistics methods as ``getattr(HistoryBuffer, 'mean')``: a restricted ``getattr`` resolves exactly
  ``min``, ``max``, ``current`` and ``mean`` of ``HistoryBuffer`` and nothing else (the real ``getattr`` would let a
  file reach any attribute of any allowed object, e.g. a function's module globals).

Use :func:`load` for plain pickles and :func:`torch_load` for ``torch.save`` files (it hands this module to
``torch.load`` as its ``pickle_module``, so torch's own storage handling is kept). For a file you trust that holds
other objects, the explicit opt-in is ``allow_unsafe_pickle=True`` of
:func:`resnest_backbones.checkpoint.read_checkpoint` (plain ``pickle`` / ``torch.load(weights_only=False)``), never
a wider list here.

Example:
    >>> from resnest_backbones import safe_pickle
    >>> checkpoint = safe_pickle.torch_load("work_dirs/x/iter_100.pth")  # mmengine training checkpoint
"""
import collections
import importlib
import pickle
import re
import sys
from typing import Any, BinaryIO

import torch

# (module, name) -> how to resolve it; modules are imported only when a file names them.
_CONTAINERS = {("collections", "OrderedDict"), ("collections", "Counter"), ("builtins", "set"),
               ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "slice"),
               ("_codecs", "encode")}
_TORCH = {("torch._utils", name) for name in (
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_nested_tensor",
    "_rebuild_meta_tensor_no_storage", "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_wrapper_subclass")} | {("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Size"),
                                     ("torch", "device"), ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"),
                                     ("torch.serialization", "_get_layout")}
# numpy 2 moved numpy.core to numpy._core; files written by either name both occur.
_NUMPY_CORE = {"_reconstruct": "multiarray", "scalar": "multiarray", "_frombuffer": "numeric"}
_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype")} | {
    (f"numpy.{core}.{submodule}", name) for core in ("core", "_core") for name, submodule in _NUMPY_CORE.items()}
_HISTORY_BUFFER = ("mmengine.logging.history_buffer", "HistoryBuffer")
_HISTORY_BUFFER_METHODS = ("min", "max", "current", "mean")
_PYTHON2_NAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # Python 2 pickles (Detectron1 weights)
_DOTTED_NAME = re.compile(r"^[A-Za-z_][\w.]*$")


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The file names a global that restricted unpickling does not allow (it could run code).

    Attributes:
        global_name (str): ``module.name`` of the refused global.
        what (str): the same, quoted, with how the file used it when that matters (``getattr(set, 'add')``).
        plausible (bool): whether it looks like a real Python name (False hints at a corrupt file instead).
    """

    def __init__(self, module: str, name: str, use: str = ""):
        self.global_name = f"{module}.{name}"
        self.what = f"{self.global_name!r}{use}"
        self.plausible = bool(_DOTTED_NAME.match(module) and _DOTTED_NAME.match(name))
        super().__init__(f"refused to unpickle the global {self.what}: restricted unpickling allows only tensors, "
                         "numpy arrays, plain containers and mmengine's HistoryBuffer logs")


def _numpy_global(name: str):
    import numpy as np
    core = getattr(np, "_core", None) or np.core
    if name in _NUMPY_CORE:
        return getattr(getattr(core, _NUMPY_CORE[name]), name)
    return {"ndarray": np.ndarray, "dtype": np.dtype}[name]


def _torch_constant(name: str):
    """``torch.float32``, ``torch.strided``, ``torch.channels_last``, ...: values, not callables that do work."""
    value = getattr(torch, name, None)
    return value if isinstance(value, (torch.dtype, torch.layout, torch.memory_format, torch.qscheme)) else None


def _history_buffer():
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError as error:
        raise pickle.UnpicklingError(f"The file holds mmengine's HistoryBuffer (an mmengine training checkpoint); "
                                     f"install mmengine to read it ({error})") from None
    return HistoryBuffer


def _restricted_getattr(obj, name: str):
    """The only ``getattr`` a file gets: the statistics methods an mmengine ``HistoryBuffer`` pickles."""
    # The class is only reachable if the file named it (which imported mmengine): no import here.
    defining_module = sys.modules.get(_HISTORY_BUFFER[0])
    if defining_module is not None and obj is defining_module.HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise ForbiddenGlobalError("builtins", "getattr", f" (as getattr({getattr(obj, '__name__', type(obj).__name__)}, "
                                                      f"{name!r}))")


def resolve_global(module: str, name: str):
    """The object restricted unpickling allows for ``module.name``; raises ForbiddenGlobalError otherwise."""
    module = _PYTHON2_NAMES.get(module, module)
    found = None
    if (module, name) in _CONTAINERS or (module, name) in _TORCH:
        found = getattr(importlib.import_module(module), name)
    elif (module, name) in _NUMPY:
        found = _numpy_global(name)
    elif module == "torch":
        found = _torch_constant(name)
    elif (module, name) == _HISTORY_BUFFER:
        found = _history_buffer()
    elif (module, name) == ("builtins", "getattr"):
        found = _restricted_getattr
    if found is None:
        raise ForbiddenGlobalError(module, name)
    return found


def _buildable() -> tuple:
    """Types whose instances a file may set state on (BUILD): what checkpoints hold, and nothing process-wide."""
    types = [collections.OrderedDict, collections.Counter, torch.Tensor]  # a state dict's OrderedDict: _metadata
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        types += [numpy.ndarray, numpy.dtype]
    history_buffer = sys.modules.get(_HISTORY_BUFFER[0])
    if history_buffer is not None:
        types.append(history_buffer.HistoryBuffer)
    return tuple(types)


class Unpickler(pickle._Unpickler):
    """Unpickler that resolves globals with :func:`resolve_global` only, and sets state (the BUILD opcode) only on
    instances of the types checkpoints hold: BUILD on an allowed class or function would set its attributes for the
    whole process (e.g. a function's ``__defaults__``). The pure-Python unpickler, because the C one lets only
    ``find_class`` be replaced; checkpoints keep their tensor data outside the pickle, so its speed does not matter.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        return resolve_global(module, name)

    def load_build(self):
        target = self.stack[-2]
        if not isinstance(target, _buildable()):
            name = getattr(target, "__qualname__", type(target).__qualname__)
            raise ForbiddenGlobalError(getattr(target, "__module__", None) or type(target).__module__, name,
                                       " (as the target of BUILD, which would set its attributes)")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


def load(file: BinaryIO, **kwargs) -> Any:
    """``pickle.load`` restricted to the globals above (same keyword arguments, e.g. ``encoding="latin1"``)."""
    return Unpickler(file, **kwargs).load()


def torch_load(file, map_location="cpu") -> Any:
    """``torch.load`` of a ``torch.save`` file (path or binary file object) with restricted unpickling.

    Reads everything ``torch.load(weights_only=True)`` reads, plus numpy values and mmengine's ``HistoryBuffer``
    (mmengine training checkpoints), without widening torch's process-wide safe globals.

    Raises:
        ForbiddenGlobalError: the file names a global outside the allowed set.
    """
    return torch.load(file, map_location=map_location, pickle_module=sys.modules[__name__], weights_only=False)


__all__ = ["ForbiddenGlobalError", "Unpickler", "load", "torch_load", "resolve_global"]
