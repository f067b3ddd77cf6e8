"""``.safetensors`` checkpoints: read and written with the ``safetensors`` package, never unpickled.

A safetensors file holds one flat mapping of names to tensors (plus string metadata) and no Python objects, so it
cannot carry code; timm publishes its weights in this format. A file is recognised by its content (an 8-byte header
length followed by a JSON header), whatever its name. Reading returns the flat state dict, which the loaders map as
any other (``keymaps``: official/timm, OpenMMLab, detectron2 layouts by their key names). Writing flattens the
converters' wrappers (``{"state_dict": ...}``, ``{"model": ...}``); their key prefixes keep the layout detectable.
"""
import os
import struct
from typing import Dict, Mapping, Optional

import torch

SUFFIX = ".safetensors"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def is_safetensors(path: str) -> bool:
    """Whether ``path`` starts like a safetensors file: an 8-byte little-endian header size that fits the file,
    then the JSON header's ``{``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    size = struct.unpack("<Q", head[:8])[0]
    return size <= _MAX_HEADER and 8 + size <= os.path.getsize(path)


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU. Raises the ``safetensors`` package's error for a damaged
    file (truncated data, a header that is not valid JSON)."""
    from safetensors.torch import load_file
    return load_file(path, device="cpu")


def safetensors_bytes(checkpoint: Mapping, metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """``checkpoint`` (a state dict, or one wrapped in ``state_dict`` / ``model`` as the converters write it) as the
    bytes of a safetensors file; ``metadata`` and the wrapper's string entries (``__author__``) go into its
    header."""
    from safetensors.torch import save

    from .keymaps import WRAPPERS
    state, extra = checkpoint, {}
    for wrapper in WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            extra.update({k: v for k, v in state.items() if isinstance(v, str)})
            state = state[wrapper]
    tensors = {key: value.detach().contiguous() for key, value in state.items() if isinstance(value, torch.Tensor)}
    if len(tensors) != len(state):
        others = sorted(key for key, value in state.items() if not isinstance(value, torch.Tensor))
        raise ValueError(f"A safetensors file holds tensors only; these entries are not tensors: {others[:8]}")
    return save(tensors, metadata={**extra, **(metadata or {})})


__all__ = ["SUFFIX", "is_safetensors", "read_safetensors", "safetensors_bytes"]
