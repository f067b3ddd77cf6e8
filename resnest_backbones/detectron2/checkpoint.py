"""``MODEL.WEIGHTS`` for ResNeSt detectors: every checkpoint layout the core knows, and ``resnest://<variant>``.

- ``resnest://resnest50`` (any name of ``resnest_backbones.list_models()``): the published ImageNet weights,
  downloaded once into the torch hub cache and hash-checked by the core (an iopath handler registered in
  detectron2's ``PathManager``, so ``PathManager.get_local_path("resnest://resnest50")`` works everywhere).
- Backbone-only files (official/timm, OpenMMLab, and ``tools/convert_weights.py``'s detectron2 export), local or
  http(s): mapped to official names with ``resnest_backbones.keymaps`` and loaded into the backbone STRICTLY by the
  core's ``load_pretrained`` (a wrong architecture raises, listing the differences).
- Full detectron2 checkpoints (``model_final.pth``, ``--resume``): detectron2's own loading, plus two checks
  detectron2 only logs: no backbone key at all, or a backbone key of the wrong shape, raise.
- detectron2-ResNeSt fork detectors: their backbone keys renamed first (``fork.py``), then as above, and every
  backbone key must match.

Every file is read by the core's ``read_checkpoint``: restricted unpickling (``resnest_backbones.safe_pickle``), also
for detectron2's ``.pkl`` (Detectron1 / Caffe2 / model-zoo numpy weights) and pycls ``.pyth`` files, which
detectron2 itself opens with plain ``pickle``; ``allow_unsafe_pickle=True`` is the opt-in for a trusted file that
holds other objects. URLs go through the core's download cache (keyed by URL). Saving is atomic (temporary file,
``fsync``, rename), and so is writing ``last_checkpoint``: a run killed while saving leaves the previous checkpoint
and a ``last_checkpoint`` that names it. A ``last_checkpoint`` naming a missing or unreadable file is reported with
the checkpoints that do exist.
"""
import logging
import os
from typing import Dict, List, Mapping, Optional, Tuple

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler
from torch import nn

from ..atomic_io import atomic_save, atomic_write_text
from ..checkpoint import PRETRAINED_SCHEME, CheckpointMismatchError, NotACheckpointError, download, is_url, \
    folder_given, load_pretrained, read_checkpoint, resolve_pretrained
from ..keymaps import OFFICIAL, OPENMMLAB, detect_format, to_official, unwrap
from ..resnest import ResNeSt
from .fork import FORK_MARKER, check_fork_backbone_loaded, fork_detector_checkpoint
from .resume import check_resumable, weight_keys

logger = logging.getLogger("detectron2.resnest_backbones")  # printed by detectron2's logging set-up
_BACKBONE_ONLY = "__resnest_backbone_format__"  # marks a checkpoint holding only backbone weights (official names)


class ResNeStPretrainedHandler(PathHandler):
    """Resolves ``resnest://<variant>`` to the local, verified copy of that variant's published checkpoint."""

    def _get_supported_prefixes(self):
        return [PRETRAINED_SCHEME]

    def _get_local_path(self, path: str, **kwargs) -> str:
        try:
            url = resolve_pretrained(path)
        except KeyError as error:
            raise KeyError(f"MODEL.WEIGHTS {path!r}: {error.args[0]}") from None
        return download(url)

    def _open(self, path: str, mode: str = "r", **kwargs):
        return open(self._get_local_path(path), mode)


def register_path_handler() -> None:
    """Register ``resnest://`` with detectron2's ``PathManager`` (once per process)."""
    if PRETRAINED_SCHEME not in getattr(PathManager, "_path_handlers", {}):
        PathManager.register_handler(ResNeStPretrainedHandler())


def find_resnest(model: nn.Module) -> Tuple[Optional[str], Optional[ResNeSt]]:
    """``(state-dict prefix, module)`` of the ResNeSt inside a detector, e.g. ``("backbone.bottom_up.", ...)``."""
    for name, module in model.named_modules():
        if isinstance(module, ResNeSt):
            return (name + "." if name else ""), module
    return None, None


def backbone_only_format(checkpoint: Mapping) -> Optional[str]:
    """The layout name when ``checkpoint`` holds only ResNeSt backbone weights, else None (a full detector)."""
    try:
        state = unwrap(checkpoint)
        fmt, prefix = detect_format(state)
    except ValueError:
        return None
    if fmt in (OFFICIAL, OPENMMLAB):
        return fmt  # other frameworks' heads cannot load into a detectron2 detector anyway
    return fmt if all(key.startswith(prefix) for key in state) else None


class ResNeStCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that understands ResNeSt backbone checkpoints; see the module docstring.

    Args:
        model, save_dir, **checkpointables: as ``DetectionCheckpointer``.
        allow_unsafe_pickle (bool): unpickle any object in the files this loads. Only for files you trust:
            unpickling can run arbitrary code. Default: False (restricted unpickling).
    """

    def __init__(self, model, save_dir="", *, allow_unsafe_pickle: bool = False, weights_key: str = "MODEL.WEIGHTS",
                 **kwargs):
        register_path_handler()
        super().__init__(model, save_dir, **kwargs)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.weights_key = weights_key  # how messages name the weights the user chose
        self.loaded_from: Optional[str] = None  # the file the model was last loaded from (None: not loaded)
        self.unloaded: List[str] = []  # model state keys that load left at their initialisation
        self._resuming = False

    # ----- loading
    def load(self, path, *args, **kwargs):
        if path and is_url(path):
            path = download(path)  # the core's cache, keyed by URL (iopath's is keyed by the URL's path only)
        elif path and "://" not in path and not os.path.isfile(path):
            what = folder_given(path) if os.path.isdir(path) else f"{path}: no such file."
            raise (IsADirectoryError if os.path.isdir(path) else FileNotFoundError)(
                f"{self.weights_key} {what} Set {self.weights_key} to a checkpoint file, a URL, resnest://<variant>, "
                "or '' to start from scratch.")
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str) -> Dict:
        self.loaded_from, self.unloaded = filename, []
        raw = read_checkpoint(filename, self.allow_unsafe_pickle)
        if not isinstance(raw, Mapping):
            raise NotACheckpointError(f"{filename} holds a {type(raw).__name__}, not a checkpoint (a dict of weights)")
        fmt = backbone_only_format(raw)
        if fmt is not None:
            _, state = to_official(raw)
            return {"model": state, _BACKBONE_ONLY: (fmt, filename)}
        fork = fork_detector_checkpoint(raw, filename)  # a detectron2-ResNeSt fork detector: backbone keys renamed
        if fork is not None:
            return fork
        if filename.endswith(".pkl"):
            return _detectron_pickle(raw)
        if filename.endswith(".pyth"):  # pycls, as detectron2 reads it
            if not isinstance(raw.get("model_state"), Mapping):
                raise ValueError(f"{filename}: a .pyth file is read as a pycls checkpoint, which holds "
                                 f"'model_state'; this one has {list(raw)[:8]}")
            state = {k: v for k, v in raw["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        return dict(raw) if "model" in raw else {"model": raw}

    def resume_or_load(self, path: str, *, resume: bool = True):
        """As detectron2's, but a ``last_checkpoint`` that names a missing or unreadable file raises an error that
        names it, the file it points to and the checkpoints that exist (instead of "Checkpoint ... not found!")."""
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        tag = os.path.join(self.save_dir, "last_checkpoint")
        with open(tag, "rb") as handle:
            named = handle.read().decode("utf-8", errors="replace").strip()
        target = os.path.join(self.save_dir, named)
        if not named or not _file_inside(self.save_dir, target):  # a name read from a file: it must stay inside
            raise FileNotFoundError(self._bad_tag(tag, named, f"is not a file in {self.save_dir}"))
        self._resuming = True
        try:
            return self.load(target)
        except NotACheckpointError as error:
            raise NotACheckpointError(self._bad_tag(tag, named, f"cannot be read: {error}")) from None
        finally:
            self._resuming = False

    def _bad_tag(self, tag: str, named: str, problem: str) -> str:
        existing = sorted(os.path.basename(p) for p in self.get_all_checkpoint_files())
        return (f"Cannot resume: {tag} names {named!r}, which {problem}. Checkpoints in {self.save_dir}: "
                f"{', '.join(existing) or 'none'}. Write the name of one of them into {tag}, or remove {tag} (or "
                "drop --resume) to start from MODEL.WEIGHTS.")

    # ----- saving
    def save(self, name: str, **kwargs) -> None:
        """As detectron2's (``model``, every checkpointable's state, ``kwargs``), written atomically."""
        if not self.save_dir or not self.save_to_disk or "://" in self.save_dir:
            return super().save(name, **kwargs)  # nothing to save, or a remote folder (PathManager's own writes)
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_save(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if "://" in self.save_dir:
            return super().tag_last_checkpoint(last_filename_basename)
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def _load_model(self, checkpoint: Dict):
        prefix, backbone = find_resnest(self.model)
        if _BACKBONE_ONLY in checkpoint:
            result = self._load_backbone(checkpoint, prefix, backbone)
            self.unloaded = [k for k in weight_keys(self.model) if not (prefix and k.startswith(prefix))]
            self._check_resumable(checkpoint, prefix, ())
            return result
        keys = {k[len("module."):] if k.startswith("module.") else k for k in checkpoint["model"]}
        result = super()._load_model(checkpoint)
        self.unloaded = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        self._check_resumable(checkpoint, prefix, result.unexpected_keys)
        if backbone is not None:
            self._check_backbone_loaded(keys, result, prefix, backbone)
        if FORK_MARKER in checkpoint:
            check_fork_backbone_loaded(result, checkpoint[FORK_MARKER])
        return result

    def _check_resumable(self, checkpoint: Dict, prefix: Optional[str], unexpected) -> None:
        if self._resuming:  # the run's own checkpoint: everything must fit, before the optimizer state is loaded
            check_resumable(self, checkpoint, prefix, unexpected)

    def _load_backbone(self, checkpoint: Dict, prefix: Optional[str], backbone: Optional[ResNeSt]):
        fmt, filename = checkpoint.pop(_BACKBONE_ONLY)
        if backbone is None:
            raise ValueError(f"{self.weights_key} {filename} is a ResNeSt backbone checkpoint ({fmt} layout) but the "
                             "model has no ResNeSt backbone: set MODEL.BACKBONE.NAME to build_resnest_fpn_backbone (or "
                             "build_resnest_backbone).")
        try:
            report = load_pretrained(backbone, checkpoint.pop("model"))
        except CheckpointMismatchError as error:
            fix = ("The checkpoint has BatchNorm statistics that this backbone's norms keep none of (GroupNorm): set "
                   "MODEL.RESNETS.NORM to FrozenBN, BN or SyncBN to load it." if error.statistics_only else
                   "Set MODEL.RESNEST.VARIANT (or the MODEL.RESNEST architecture keys) to the checkpoint's "
                   f"architecture, or {self.weights_key} to a checkpoint of this one.")
            raise CheckpointMismatchError("\n".join([
                f"{self.weights_key} {filename} ({fmt} layout) does not fit the ResNeSt backbone of "
                f"MODEL.RESNEST.VARIANT {getattr(backbone, 'variant', '?')!r}:", *error.details, fix]),
                error.details, statistics_only=error.statistics_only) from None
        logger.info(f"Loaded {len(report.loaded)} ResNeSt backbone tensors ({fmt} layout) into '{prefix}*'; "
                    f"skipped {len(report.skipped)} the backbone does not build (classifier / unused stages). "
                    "Every other part of the detector starts from its initialisation.")
        return None  # nothing for detectron2 to report: load_pretrained was strict

    def _check_backbone_loaded(self, keys, incompatible, prefix: str, backbone: ResNeSt) -> None:
        own = [prefix + k for k in backbone.state_dict()]
        if not any(k in keys for k in own):
            raise CheckpointMismatchError(
                f"{self.weights_key} holds no weight of the ResNeSt backbone (expected keys like {own[0]!r}): it is "
                f"not a checkpoint of this detector. Set {self.weights_key} to a detectron2 checkpoint of a ResNeSt "
                "detector, a ResNeSt backbone checkpoint (any layout), resnest://<variant>, or '' to start from "
                "scratch.")
        wrong = [f"{k}: checkpoint {a} vs model {b}" for k, a, b in incompatible.incorrect_shapes if k in own]
        if wrong:
            raise CheckpointMismatchError(
                f"{len(wrong)} backbone weights in {self.weights_key} have the wrong shape ({'; '.join(wrong[:5])}). "
                "Set MODEL.RESNEST.VARIANT (and MODEL.RESNEST keys) to the checkpoint's architecture.")


def _file_inside(folder: str, path: str) -> bool:
    """Whether ``path`` is a file inside ``folder`` once resolved (links included)."""
    real = os.path.realpath(folder)
    return os.path.isfile(path) and os.path.commonpath([real, os.path.realpath(path)]) == real


def _detectron_pickle(raw: Mapping) -> Dict:
    """detectron2's reading of a ``.pkl``: its model-zoo format (``model`` + ``__author__``) as is, else Detectron1 /
    Caffe2 blobs (optionally under ``blobs``, without the ``_momentum`` optimizer blobs) matched by name."""
    if "model" in raw and "__author__" in raw:
        return dict(raw)
    blobs = raw["blobs"] if isinstance(raw.get("blobs"), Mapping) else raw
    state = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    return {"model": state, "__author__": "Caffe2", "matching_heuristics": True}


__all__ = ["ResNeStCheckpointer", "ResNeStPretrainedHandler", "register_path_handler", "find_resnest"]
