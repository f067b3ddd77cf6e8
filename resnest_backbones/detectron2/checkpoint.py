"""``MODEL.WEIGHTS`` for ResNeSt detectors: every checkpoint layout the core knows, and ``resnest://<variant>``.

- ``resnest://resnest50`` (any name of ``resnest_backbones.list_models()``): the published ImageNet weights,
  downloaded once into the torch hub cache and hash-checked by the core (an iopath handler registered in
  detectron2's ``PathManager``, so ``PathManager.get_local_path("resnest://resnest50")`` works everywhere).
- Backbone-only files (official/timm, OpenMMLab, and ``tools/convert_weights.py``'s detectron2 export), local or
  http(s): mapped to official names with ``resnest_backbones.keymaps`` and loaded into the backbone STRICTLY by the
  core's ``load_pretrained`` (a wrong architecture raises, listing the differences).
- Full detectron2 checkpoints (``model_final.pth``, ``--resume``): detectron2's own loading, plus two checks
  detectron2 only logs: no backbone key at all, or a backbone key of the wrong shape, raise.
"""
import logging
from typing import Dict, Mapping, Optional, Tuple

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler
from torch import nn

from ..checkpoint import PRETRAINED_SCHEME, CheckpointMismatchError, download, load_pretrained, read_checkpoint, \
    resolve_pretrained
from ..keymaps import OFFICIAL, OPENMMLAB, detect_format, to_official, unwrap
from ..resnest import ResNeSt

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


def _is_backbone_only(checkpoint: Mapping) -> Optional[str]:
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
    """``DetectionCheckpointer`` that understands ResNeSt backbone checkpoints; see the module docstring."""

    def __init__(self, model, save_dir="", **kwargs):
        register_path_handler()
        super().__init__(model, save_dir, **kwargs)

    def _load_file(self, filename: str) -> Dict:
        if filename.endswith((".pkl", ".pyth")):
            return super()._load_file(filename)
        # weights_only loading (no arbitrary unpickling): detectron2's training checkpoints hold only tensors and
        # plain Python values, so they load this way too.
        raw = read_checkpoint(filename)
        fmt = _is_backbone_only(raw) if isinstance(raw, Mapping) else None
        if fmt is not None:
            _, state = to_official(raw)
            return {"model": state, _BACKBONE_ONLY: fmt}
        return dict(raw) if isinstance(raw, Mapping) and "model" in raw else {"model": raw}

    def _load_model(self, checkpoint: Dict):
        prefix, backbone = find_resnest(self.model)
        if _BACKBONE_ONLY in checkpoint:
            return self._load_backbone(checkpoint, prefix, backbone)
        keys = {k[len("module."):] if k.startswith("module.") else k for k in checkpoint["model"]}
        incompatible = super()._load_model(checkpoint)
        if backbone is not None:
            self._check_backbone_loaded(keys, incompatible, prefix, backbone)
        return incompatible

    def _load_backbone(self, checkpoint: Dict, prefix: Optional[str], backbone: Optional[ResNeSt]):
        fmt = checkpoint.pop(_BACKBONE_ONLY)
        if backbone is None:
            raise ValueError(f"MODEL.WEIGHTS is a ResNeSt backbone checkpoint ({fmt} layout) but the model has no "
                             "ResNeSt backbone: set MODEL.BACKBONE.NAME to build_resnest_fpn_backbone (or "
                             "build_resnest_backbone).")
        try:
            report = load_pretrained(backbone, checkpoint.pop("model"))
        except CheckpointMismatchError as error:
            raise CheckpointMismatchError(
                f"{error}\nMODEL.RESNEST.VARIANT is {getattr(backbone, 'variant', '?')!r}: set it (or the "
                "MODEL.RESNEST architecture keys) to the checkpoint's architecture, or MODEL.WEIGHTS to a "
                "checkpoint of this one.") from None
        logger.info(f"Loaded {len(report.loaded)} ResNeSt backbone tensors ({fmt} layout) into '{prefix}*'; "
                    f"skipped {len(report.skipped)} the backbone does not build (classifier / unused stages). "
                    "Every other part of the detector starts from its initialisation.")
        return None  # nothing for detectron2 to report: load_pretrained was strict

    @staticmethod
    def _check_backbone_loaded(keys, incompatible, prefix: str, backbone: ResNeSt) -> None:
        own = [prefix + k for k in backbone.state_dict()]
        if not any(k in keys for k in own):
            raise CheckpointMismatchError(
                f"MODEL.WEIGHTS holds no weight of the ResNeSt backbone (expected keys like {own[0]!r}): it is not "
                "a checkpoint of this detector. Set MODEL.WEIGHTS to a detectron2 checkpoint of a ResNeSt detector, "
                "a ResNeSt backbone checkpoint (any layout), resnest://<variant>, or '' to start from scratch.")
        wrong = [f"{k}: checkpoint {a} vs model {b}" for k, a, b in incompatible.incorrect_shapes if k in own]
        if wrong:
            raise CheckpointMismatchError(
                f"{len(wrong)} backbone weights in MODEL.WEIGHTS have the wrong shape ({'; '.join(wrong[:5])}). "
                "Set MODEL.RESNEST.VARIANT (and MODEL.RESNEST keys) to the checkpoint's architecture.")


__all__ = ["ResNeStCheckpointer", "ResNeStPretrainedHandler", "register_path_handler", "find_resnest"]
