"""Loading checkpoints into a ResNeSt: files, URLs (verified, cached like torchvision), published variant names.

``load_pretrained`` recognises every layout in ``keymaps`` and loads strictly: anything that does not fit raises a
``CheckpointMismatchError`` listing missing keys, unexpected keys and shape mismatches.
"""
import os
import re
import urllib.error
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Union
from urllib.parse import urlparse

import torch
from torch import nn

from .keymaps import to_official
from .variants import VARIANTS

_HASHED_NAME = re.compile(r"-([a-f0-9]{6,64})\.[a-zA-Z0-9]+$")
PRETRAINED_SCHEME = "resnest://"


class CheckpointMismatchError(RuntimeError):
    """The checkpoint does not fit the model; the message lists every difference."""


@dataclass
class LoadReport:
    source: str
    format: str
    loaded: List[str] = field(default_factory=list)
    # Keys of parts the model deliberately does not have (classifier of a backbone, stages it does not build).
    skipped: List[str] = field(default_factory=list)


def _is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https", "file")


def resolve_pretrained(name: str) -> str:
    """URL of the published ImageNet checkpoint of variant ``name`` (also accepts ``resnest://name``)."""
    name = name[len(PRETRAINED_SCHEME):] if name.startswith(PRETRAINED_SCHEME) else name
    if name not in VARIANTS:
        raise KeyError(f"No published checkpoint named {name!r}; published: {', '.join(VARIANTS)}")
    return VARIANTS[name].checkpoint.url


def download(url: str, cache_dir: Optional[str] = None, progress: bool = True) -> str:
    """Download ``url`` into the torch hub cache (``$TORCH_HOME/hub/checkpoints``) unless already there.

    When the file name carries a hash (``name-<sha256 prefix>.pth``, the torch.hub convention) the download is
    verified against it; a wrong or truncated file is deleted and reported.
    """
    cache_dir = cache_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(cache_dir, exist_ok=True)
    file_name = os.path.basename(urlparse(url).path)
    destination = os.path.join(cache_dir, file_name)
    if os.path.exists(destination):
        return destination
    match = _HASHED_NAME.search(file_name)
    hash_prefix = match.group(1) if match else None
    try:
        torch.hub.download_url_to_file(url, destination, hash_prefix=hash_prefix, progress=progress)
    except RuntimeError as error:
        if "invalid hash value" in str(error):
            raise RuntimeError(f"Downloaded {url} but its SHA-256 does not start with {hash_prefix!r} (the hash in "
                               "its file name): the file is corrupt, truncated or not the published one. Nothing "
                               "was saved; retry, or download it by hand and pass the local path.") from error
        raise
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise RuntimeError(f"Could not download {url}: {error}. Check the network, or download the file and pass "
                           "its local path instead.") from error
    return destination


def read_checkpoint(path: str, allow_unsafe_pickle: bool = False) -> Mapping:
    """``torch.load`` with ``weights_only=True`` unless the caller explicitly trusts the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except Exception as error:
        text = str(error)
        if "Weights only load failed" in text or "weights_only" in text:
            raise RuntimeError(
                f"{path} stores Python objects besides tensors (e.g. an mmengine or detectron2 training checkpoint "
                "with its optimizer and logger state). It was not unpickled, because unpickling can run arbitrary "
                "code. If you trust the file, pass allow_unsafe_pickle=True (tools/convert_weights.py "
                "--allow-unsafe-pickle), or save just its state_dict.") from error
        raise RuntimeError(f"Could not read {path} as a PyTorch checkpoint ({type(error).__name__}: {text}). The "
                           "file may be truncated or not a checkpoint.") from error


def load_state(source: Union[str, Mapping], allow_unsafe_pickle: bool = False, progress: bool = True) -> Mapping:
    """A checkpoint object from a path, URL, published variant name (``resnest50`` / ``resnest://resnest50``) or
    an in-memory state dict."""
    if isinstance(source, Mapping):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"Expected a path, URL, variant name or state dict, got {type(source).__name__}")
    source = os.fspath(source)
    if source.startswith(PRETRAINED_SCHEME) or (source in VARIANTS and not os.path.exists(source)):
        source = resolve_pretrained(source)
    if _is_url(source):
        source = download(source, progress=progress)
    return read_checkpoint(source, allow_unsafe_pickle)


def _describe(source) -> str:
    return source if isinstance(source, str) else f"<{type(source).__name__} state dict>"


def load_pretrained(model: nn.Module, source: Union[str, Mapping], allow_unsafe_pickle: bool = False,
                    progress: bool = True) -> LoadReport:
    """Load ``source`` into ``model`` (a ``resnest_backbones.ResNeSt``), strictly.

    Args:
        model: the network to fill.
        source: a file path, an http(s) URL, a published variant name (``"resnest50"`` or ``"resnest://resnest50"``)
            or a state dict / checkpoint mapping. Official/timm, OpenMMLab (mmdet/mmseg ``ResNeSt``, ``state_dict``
            wrapper, ``backbone.`` prefix) and this package's detectron2 export are recognised.
        allow_unsafe_pickle: let ``torch.load`` unpickle arbitrary objects (only for files you trust).
        progress: show a download progress bar.

    Returns:
        LoadReport with the detected format, the loaded keys, and the keys skipped because the model deliberately
        lacks that part (the classifier ``fc`` of a backbone, stages it does not build).

    Raises:
        CheckpointMismatchError: listing missing keys, unexpected keys and shape mismatches.
    """
    fmt, state = to_official(load_state(source, allow_unsafe_pickle, progress))
    own = model.state_dict()
    built_stages = set(getattr(model, "stage_names", []))
    has_head = getattr(model, "num_classes", 0) > 0
    report = LoadReport(_describe(source), fmt)

    def not_built(key: str) -> bool:
        top = key.split(".", 1)[0]
        return (top == "fc" and not has_head) or (re.fullmatch(r"layer\d+", top) is not None and
                                                  top not in built_stages)

    to_load: Dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in state.items():
        if key in own:
            if own[key].shape != value.shape:
                mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}")
            else:
                to_load[key] = value
        elif not_built(key):
            report.skipped.append(key)
        elif not key.endswith("num_batches_tracked"):  # BN bookkeeping, absent from FrozenBN and old checkpoints
            unexpected.append(key)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing or unexpected or mismatched:
        lines = [f"Checkpoint {report.source} ({fmt} format) does not fit {type(model).__name__}:"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", mismatched)):
            if keys:
                lines.append(f"  {len(keys)} {title}: " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else ""))
        lines.append("Check that the variant (depth, radix, cardinality, width, stem_width) matches the checkpoint, "
                     "e.g. create_model('resnest101') for a ResNeSt-101 file.")
        raise CheckpointMismatchError("\n".join(lines))
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    return report
