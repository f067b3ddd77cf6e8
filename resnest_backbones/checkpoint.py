"""Loading checkpoints into a ResNeSt: files, URLs (verified, cached like torchvision), published variant names.

``load_pretrained`` recognises every layout in ``keymaps`` and loads strictly: anything that does not fit raises a
``CheckpointMismatchError`` listing missing keys, unexpected keys and shape mismatches.
"""
import difflib
import hashlib
import os
import pickle
import re
import sys
import urllib.error
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch
from torch import nn

from . import safe_pickle
from .atomic_io import atomic_write_text
from .keymaps import to_official
from .safetensors_io import SUFFIX as SAFETENSORS_SUFFIX
from .safetensors_io import is_safetensors, read_safetensors
from .variants import VARIANTS

_HASHED_NAME = re.compile(r"-([a-f0-9]{6,64})\.[a-zA-Z0-9]+$")
PRETRAINED_SCHEME = "resnest://"
SOURCE_SUFFIX = ".source"  # beside each downloaded file: the URL it came from
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pkl", ".pyth", ".bin", ".ckpt", ".safetensors")


class CheckpointMismatchError(RuntimeError):
    """The checkpoint does not fit the model; the message lists every difference.

    Args:
        message: the whole message.
        details: the lines that list the differences alone, for callers that phrase the fix in their own terms.
        statistics_only: only BatchNorm running statistics differ (a BatchNorm checkpoint for a model whose norms
            keep none, e.g. GroupNorm): the fix is the norm, not the variant.
    """

    def __init__(self, message: str, details: Sequence[str] = (), statistics_only: bool = False):
        super().__init__(message)
        self.details = list(details)
        self.statistics_only = statistics_only


class NotACheckpointError(RuntimeError):
    """The file cannot be read as a checkpoint: not a PyTorch file or pickle, or truncated / corrupt."""


class UnsafeCheckpointError(RuntimeError):
    """The file stores Python objects that restricted unpickling refuses (loading them could run code)."""


@dataclass
class LoadReport:
    source: str
    format: str
    loaded: List[str] = field(default_factory=list)
    # Keys of parts the model deliberately does not have (classifier of a backbone, stages it does not build).
    skipped: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what was loaded from where, and how much was skipped."""
        return (f"loaded {len(self.loaded)} tensors from {self.source} ({self.format} layout); skipped "
                f"{len(self.skipped)} the model does not build (classifier, unused stages)")


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https", "file")


def resolve_pretrained(name: str) -> str:
    """URL of the published ImageNet checkpoint of variant ``name`` (also accepts ``resnest://name``)."""
    name = name[len(PRETRAINED_SCHEME):] if name.startswith(PRETRAINED_SCHEME) else name
    if name not in VARIANTS:
        raise KeyError(f"No published checkpoint named {name!r}; published: {', '.join(VARIANTS)}")
    return VARIANTS[name].checkpoint.url


def _recorded_source(path: str) -> Optional[str]:
    try:
        with open(path + SOURCE_SUFFIX) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _verified_by_name(path: str) -> bool:
    """Whether the file's name carries a hash (``name-<sha256 prefix>.pth``) that its content matches."""
    match = _HASHED_NAME.search(os.path.basename(path))
    if not match:
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(match.group(1))


def _holds(path: str, url: str) -> bool:
    """Whether ``path`` is ``url``'s download: recorded as such, or (no record: put there by torch.hub, mmengine or
    by hand) content-addressed by the hash in its name, which any correct download of that name must match."""
    if not os.path.isfile(path):
        return False
    recorded = _recorded_source(path)
    return recorded == url or (recorded is None and _verified_by_name(path))


def cache_path(url: str, cache_dir: str) -> str:
    """Where ``download`` keeps ``url``: ``<cache_dir>/<file name>`` (torch.hub's place) when that file is absent or
    is this URL's download, else ``<cache_dir>/<sha256(url)[:16]>/<file name>``.

    Each download records its URL beside the file (``<file>.source``), so two URLs that end in the same file name
    never share a file. A file without a record is taken for a URL's download only if the hash in its name
    verifies; otherwise it is left alone.
    """
    name = os.path.basename(urlparse(url).path) or "download"
    flat = os.path.join(cache_dir, name)
    if not os.path.exists(flat) or _holds(flat, url):
        return flat
    return os.path.join(cache_dir, hashlib.sha256(url.encode("utf-8")).hexdigest()[:16], name)


def download(url: str, cache_dir: Optional[str] = None, progress: bool = True, check_hash: bool = True) -> str:
    """Download ``url`` into the torch hub cache (``$TORCH_HOME/hub/checkpoints``) unless already there.

    The cache is keyed by URL (see ``cache_path``). When the file name carries a hash (``name-<sha256 prefix>.pth``,
    the torch.hub convention) the download is verified against it; a wrong or truncated file is deleted and reported.
    ``check_hash=False`` skips that check (mmengine's ``open-mmlab://`` downloads do not check either).
    """
    destination = cache_path(url, cache_dir or os.path.join(torch.hub.get_dir(), "checkpoints"))
    if _holds(destination, url):
        if _recorded_source(destination) is None:
            atomic_write_text(destination + SOURCE_SUFFIX, url + "\n")
        return destination
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    match = _HASHED_NAME.search(os.path.basename(destination))
    hash_prefix = match.group(1) if match and check_hash else None
    try:
        torch.hub.download_url_to_file(url, destination, hash_prefix=hash_prefix, progress=progress)
    except RuntimeError as error:
        if "invalid hash value" in str(error):
            raise RuntimeError(f"Downloaded {url} but its SHA-256 does not start with {hash_prefix!r} (the hash in "
                               "its file name): the file is corrupt, truncated or not the published one. Nothing "
                               "was saved; retry, or download it by hand and pass the local path.") from error
        raise
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise RuntimeError(f"Could not download {url}: {error}. Check the network, or download the file by hand "
                           f"and {_where_by_hand(url, destination)}, or pass its local path "
                           "instead.") from error
    atomic_write_text(destination + SOURCE_SUFFIX, url + "\n")  # after the file: a record always has its file
    return destination


def _where_by_hand(url: str, destination: str) -> str:
    """Where a file downloaded by hand is found by the next ``download(url)`` (``cache_path``'s rules)."""
    match = _HASHED_NAME.search(os.path.basename(destination))
    if match:  # found by the hash in its name
        return f"put it at {destination} (its SHA-256 must start with {match.group(1)}, as its name says)"
    return f"put it at {destination} and the line {url} into {destination + SOURCE_SUFFIX}"


def _arrays_to_tensors(obj):
    """numpy arrays (pickled Detectron1 / detectron2 ``.pkl`` weights) -> tensors, inside nested mappings."""
    numpy = sys.modules.get("numpy")  # imported by unpickling when the file holds arrays
    if isinstance(obj, Mapping):
        return {key: _arrays_to_tensors(value) for key, value in obj.items()}
    if numpy is not None and isinstance(obj, numpy.ndarray) and obj.dtype.kind in "biufc":
        return torch.from_numpy(obj.copy())
    return obj


def _read(path: str, allow_unsafe_pickle: bool):
    if is_safetensors(path) or path.endswith(SAFETENSORS_SUFFIX):
        return read_safetensors(path)  # tensors only, no unpickling at all
    unpickling = pickle if allow_unsafe_pickle else safe_pickle
    with open(path, "rb") as handle:
        if handle.read(4) == b"PK\x03\x04":  # torch.save's zip format (torch >= 1.6)
            return torch.load(path, map_location="cpu", pickle_module=unpickling, weights_only=False)
        handle.seek(0)
        first = unpickling.load(handle, encoding="latin1")  # latin1: Python 2 pickles (Detectron1 weights)
    if isinstance(first, int) and first == torch.serialization.MAGIC_NUMBER:  # torch.save's legacy format
        return torch.load(path, map_location="cpu", pickle_module=unpickling, weights_only=False)
    return _arrays_to_tensors(first)  # a plain pickle (.pkl weights)


def read_checkpoint(path: str, allow_unsafe_pickle: bool = False) -> Mapping:
    """Read a checkpoint file as data: ``torch.save`` files (zip or legacy), pickled ``.pkl`` weights and
    ``.safetensors`` files (read by the ``safetensors`` package, never unpickled).

    Unpickling is restricted (``resnest_backbones.safe_pickle``): tensors, numpy arrays, plain containers and the
    logs of mmengine training checkpoints, no other object, so nothing in the file can run code. The numpy arrays
    of a plain pickle are returned as tensors.

    Args:
        path: the file.
        allow_unsafe_pickle: unpickle any object (plain ``pickle`` / ``torch.load(weights_only=False)``). Only for
            a file you trust: unpickling an object can run arbitrary code.

    Raises:
        FileNotFoundError: no such file. IsADirectoryError: ``path`` is a folder.
        UnsafeCheckpointError: the file stores other objects; the message names the first one.
        NotACheckpointError: the file is not a checkpoint, or is truncated or corrupt.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(folder_given(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        return _read(path, allow_unsafe_pickle)
    except safe_pickle.ForbiddenGlobalError as error:
        if error.plausible:
            raise UnsafeCheckpointError(
                f"{path} needs unsafe unpickling: it stores {error.what}, a Python object that is not "
                "tensors, arrays or plain data. It was not loaded, because unpickling such objects can run "
                "arbitrary code. If you trust the file, pass allow_unsafe_pickle=True (tools/convert_weights.py "
                "--allow-unsafe-pickle) and keep a plain state dict of it.") from None
        cause = error  # random bytes that happen to spell a global: a damaged file, not an unsafe one
    except Exception as error:  # torch, zipfile and pickle each raise their own types for a damaged file
        cause = error
    with open(path, "rb") as handle:
        head = handle.read(8)
    reason = (str(cause).splitlines() or [""])[0][:200]
    kind = "as a safetensors file" if is_safetensors(path) or path.endswith(SAFETENSORS_SUFFIX) else \
        "neither as a torch.save file nor as a pickle"
    raise NotACheckpointError(
        f"{path} is truncated or not a checkpoint: it reads {kind} ({type(cause).__name__}: {reason}; "
        f"{os.path.getsize(path)} bytes, starting with {head!r}). Check the path, or download or copy the file "
        "again.") from None


def folder_given(path: str, what: str = "a checkpoint") -> str:
    """The message for a folder given where ``what`` (a file) is expected, naming the checkpoints inside it."""
    try:
        inside = sorted(name for name in os.listdir(path) if name.endswith(CHECKPOINT_SUFFIXES))
    except OSError:
        inside = []
    listed = (f"; checkpoints in it: {', '.join(inside[:6])}" + (" ..." if len(inside) > 6 else "")) if inside else ""
    return f"{path} is a folder, not {what} file: give the path of the file itself{listed}."


def resolve_source(source: str, progress: bool = True) -> str:
    """The local file of a path, URL (downloaded into the cache) or published variant name (``resnest50`` /
    ``resnest://resnest50``)."""
    source = os.fspath(source)
    if source.startswith(PRETRAINED_SCHEME) or (source in VARIANTS and not os.path.exists(source)):
        source = resolve_pretrained(source)
    if is_url(source):
        return download(source, progress=progress)
    if not os.path.exists(source):
        close = difflib.get_close_matches(os.path.basename(source), list(VARIANTS), 1)
        raise FileNotFoundError(f"Checkpoint file not found: {source} (nor is it a URL or a published variant name"
                                + (f"; did you mean {close[0]!r}?)" if close else ")"))
    return source


def load_state(source: Union[str, Mapping], allow_unsafe_pickle: bool = False, progress: bool = True) -> Mapping:
    """A checkpoint object from a path, URL, published variant name (``resnest50`` / ``resnest://resnest50``) or
    an in-memory state dict."""
    if isinstance(source, Mapping):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"Expected a path, URL, variant name or state dict, got {type(source).__name__}")
    return read_checkpoint(resolve_source(source, progress), allow_unsafe_pickle)


def _describe(source) -> str:
    return source if isinstance(source, str) else f"<{type(source).__name__} state dict>"


def _only_statistics_differ(missing: List[str], unexpected: List[str], mismatched: List[str]) -> bool:
    return not missing and not mismatched and bool(unexpected) and all(
        key.endswith((".running_mean", ".running_var")) for key in unexpected)


def _norm_names(model: nn.Module) -> str:
    return ", ".join(sorted({type(m).__name__ for m in model.modules()
                             if isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._NormBase))}))


def _mismatch_advice(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], missing: List[str],
                     unexpected: List[str], mismatched: List[str], model: nn.Module,
                     statistics_only: bool) -> Tuple[str, str]:
    """``(what the checkpoint is, when that explains the mismatch; what to do)`` for ``load_pretrained``'s error."""
    statistics = any(key.endswith(".running_mean") for key in own)
    if statistics_only:
        return (", with BatchNorm statistics",
                f"The checkpoint was trained with BatchNorm (running_mean / running_var) and this model's norms "
                f"({_norm_names(model)}) keep none: build the model with norm_layer 'BN', 'SyncBN' or 'FrozenBN' "
                "(detectron2: MODEL.RESNETS.NORM; OpenMMLab: norm_cfg) to load it.")
    if statistics and not any(key.endswith(".running_mean") for key in state) and \
            any(key.endswith(".conv3.bias") for key in state):  # BN folded into biased convolutions
        return (", from a model fused by to_fast_inference",
                "Fused weights (BatchNorm folded into the convolutions) cannot be unfused: load the original "
                "checkpoint into the plain model, then call resnest_backbones.fast_inference.to_fast_inference(model).")
    if any(".conv2.conv." in key for key in own) and not any(".conv2.conv." in key or ".conv2.fc1." in key
                                                             for key in state):
        return (", without split-attention weights: a plain ResNet such as torchvision's",
                "A ResNet checkpoint does not fit a ResNeSt: use ResNeSt weights (resnest_backbones.list_models() "
                "names the published ones, e.g. create_model('resnest50', pretrained=True)).")
    classifier = [key.split(":")[0] for key in mismatched] + missing + unexpected
    if classifier and all(key.startswith("fc.") for key in classifier):
        classes = getattr(model, "num_classes", "?")
        if "fc.weight" not in state:
            return ("", f"Only the classifier differs: the checkpoint has none, the model has num_classes={classes}. "
                        "Create the model with num_classes=0 (the default) to load it, and put your own head on it.")
        wanted = state["fc.weight"].shape[0]
        return ("", f"Only the classifier differs: the checkpoint's has {wanted} classes, the model's "
                    f"num_classes={classes}. Create the model with num_classes={wanted} to load the checkpoint whole, "
                    "or with num_classes=0 (no classifier) to load the backbone alone and put your own head on it.")
    return ("", "Check that the variant (depth, radix, cardinality, width, stem_width) matches the checkpoint, e.g. "
                "create_model('resnest101') for a ResNeSt-101 file.")


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
    built_stages = set(getattr(model, "layer_names", []))
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
        details = [f"  {len(keys)} {title}: " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "")
                   for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                       ("shape mismatches", mismatched)) if keys]
        statistics_only = _only_statistics_differ(missing, unexpected, mismatched)
        kind, advice = _mismatch_advice(state, own, missing, unexpected, mismatched, model, statistics_only)
        raise CheckpointMismatchError("\n".join(
            [f"Checkpoint {report.source} ({fmt} format{kind}) does not fit {type(model).__name__}:", *details,
             advice]), details, statistics_only=statistics_only)
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    return report
