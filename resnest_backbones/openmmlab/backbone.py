"""ResNeSt as an OpenMMLab backbone: one class shared by MMDetection and MMSegmentation (imports mmengine only).

``resnest_backbones.mmdet`` and ``resnest_backbones.mmseg`` register :class:`ResNeStBackbone` in their framework's
``MODELS`` registry. Both frameworks already register a ``ResNeSt`` of their own, hence the distinct name.

The class *is* the core ``ResNeSt`` (subclass), so its state-dict keys are the official/timm names and a detector
checkpoint stores them under ``backbone.``; this module only translates OpenMMLab-style arguments.
"""
import copy
import difflib
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import initialize
from torch import nn

from ..checkpoint import load_pretrained, load_state
from ..keymaps import unwrap
from ..layers import make_norm_layer
from ..resnest import STAGE_NAMES, ResNeSt
from ..variants import VARIANTS, get_variant

DEPTHS = {14: "resnest14", 26: "resnest26", 50: "resnest50", 101: "resnest101", 200: "resnest200",
          269: "resnest269"}
# OpenMMLab's (strides, dilations) of the four stages -> the core's output_stride.
STRIDE_LAYOUTS = {
    ((1, 2, 2, 2), (1, 1, 1, 1)): 32,
    ((1, 2, 2, 1), (1, 1, 1, 2)): 16,
    ((1, 2, 1, 1), (1, 1, 2, 4)): 8,  # the "-d8" layout of the segmentation configs
}
# mmcv's norm types -> the core's NORM_LAYERS names (FrozenBN is this package's addition).
MMCV_NORMS = {"BN": "BN", "BN2d": "BN", "SyncBN": "SyncBN", "GN": "GN", "FrozenBN": "FrozenBN"}
# Architecture arguments that override the variant's published hyper-parameters when given.
ARCH_OVERRIDES = ("radix", "cardinality", "base_width", "stem_width", "deep_stem", "avg_down", "avd", "avd_first",
                  "reduction_factor", "drop_block_prob", "last_gamma", "in_channels")


def norm_factory(norm_cfg: Optional[Dict]) -> Callable[[int], nn.Module]:
    """An OpenMMLab ``norm_cfg`` (``type`` BN / SyncBN / GN / FrozenBN, ``requires_grad``, ``eps``, ``momentum``,
    ``num_groups``) as the core's ``f(num_channels) -> nn.Module`` (``layers.make_norm_layer``)."""
    cfg = dict(type="BN") if norm_cfg is None else dict(norm_cfg)
    norm_type = cfg.pop("type", None)
    if not isinstance(norm_type, str) or norm_type not in MMCV_NORMS:
        raise ValueError(f"norm_cfg type {norm_type!r} is not supported by ResNeStBackbone; use one of "
                         f"{', '.join(MMCV_NORMS)}, e.g. norm_cfg=dict(type='SyncBN', requires_grad=True)")
    if norm_type == "GN" and "num_groups" not in cfg:
        raise ValueError("norm_cfg=dict(type='GN') needs num_groups, e.g. dict(type='GN', num_groups=32)")
    return make_norm_layer(MMCV_NORMS[norm_type], requires_grad=cfg.pop("requires_grad", True), **cfg)


def output_stride_of(strides: Sequence[int], dilations: Sequence[int]) -> int:
    """Core ``output_stride`` for OpenMMLab ``strides`` / ``dilations``; raises for layouts the core lacks."""
    key = (tuple(strides), tuple(dilations))
    if key not in STRIDE_LAYOUTS:
        known = "; ".join(f"strides={s}, dilations={d}" for s, d in STRIDE_LAYOUTS)
        raise ValueError(f"Unsupported strides={key[0]}, dilations={key[1]}: ResNeSt supports {known} "
                         "(or pass output_stride=32/16/8)")
    return STRIDE_LAYOUTS[key]


def _variant_name(variant: Optional[str], depth: Optional[int]) -> str:
    if depth is not None and depth not in DEPTHS:
        raise ValueError(f"No ResNeSt of depth {depth}; depths: {sorted(DEPTHS)} (or pass variant=, one of "
                         f"{', '.join(VARIANTS)})")
    if variant is None and depth is None:
        raise ValueError("ResNeStBackbone needs variant='resnest50' (any of resnest_backbones.list_models()) or "
                         f"depth= (one of {sorted(DEPTHS)})")
    if variant is not None and depth is not None and DEPTHS[depth] != variant:
        raise ValueError(f"variant={variant!r} and depth={depth} disagree; give only one of them")
    name = variant or DEPTHS[depth]
    get_variant(name)  # raises KeyError with close matches for a typo
    return name


class ResNeStBackbone(ResNeSt, BaseModule):
    """ResNeSt backbone for MMDetection / MMSegmentation (registered as ``ResNeStBackbone``).

    Args:
        variant (str, optional): published variant, e.g. ``'resnest50'``, ``'resnest50_fast_2s2x40d'``
            (``resnest_backbones.list_models()``). Give this or ``depth``.
        depth (int, optional): 14, 26, 50, 101, 200 or 269; shorthand for ``variant='resnest<depth>'``.
        out_indices (Sequence[int]): stages to output (0 = res2, stride 4 ... 3 = res5). Default: (0, 1, 2, 3).
        frozen_stages (int): -1 trains everything, 0 freezes the stem, k the stem and stages 1..k (their
            parameters stop requiring grad and their norm layers stay in eval mode). Default: -1.
        norm_cfg (dict): ``dict(type='BN' | 'SyncBN' | 'GN' | 'FrozenBN', requires_grad=True, ...)``; GN needs
            ``num_groups`` (any): split attention's norm of its 1x1 attention vector becomes a one-group GroupNorm
            with the same eps, affine and ``requires_grad`` (``layers.single_group``; several groups over a 1x1 map
            would normalise every value to 0). Default: ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): keep BatchNorm layers in eval mode while training (statistics frozen). Default: False.
        with_cp (bool): gradient checkpointing of each block. Default: False.
        strides, dilations (Sequence[int], optional): OpenMMLab's per-stage layout; ``(1, 2, 1, 1)`` with
            ``(1, 1, 2, 4)`` is the "-d8" segmentation layout (output stride 8), ``(1, 2, 2, 1)`` with
            ``(1, 1, 1, 2)`` output stride 16. Alternative to ``output_stride``.
        output_stride (int, optional): 32, 16 or 8. Default: 32.
        dilated_layout (str): first block of a dilated stage: ``'official'`` (official code, the paper's
            segmentation models) or ``'mmseg'`` (mmseg's ``ResNeSt`` with ``contract_dilation=True``; use it to
            load mmseg-trained ResNeSt segmentors), or ``'timm'``. Default: ``'official'``.
        contract_dilation (bool): must be True (every layout contracts the first dilated block's dilation, as
            mmseg's ``contract_dilation=True``); accepted so mmseg-style configs read naturally.
        fast_inference (bool): in eval mode, run a copy with BatchNorm folded into the convolutions
            (``resnest_backbones.fast_inference.to_fast_inference``; same outputs up to float rounding). The copy is
            made at the first eval forward and dropped by ``train()`` or ``load_state_dict``. Default: False.
        init_cfg (dict or list[dict], optional): ``dict(type='Pretrained', checkpoint=...)`` with a path, URL,
            ``'resnest://resnest50'`` (published ImageNet weights, downloaded once) or any OpenMMLab /
            official / timm / detectron2-export checkpoint of the same variant; ``prefix='backbone.'`` picks a
            sub-state. Loaded strictly by ``resnest_backbones.load_pretrained``.
        **arch: overrides of the variant's hyper-parameters: ``radix``, ``cardinality``, ``base_width``,
            ``stem_width``, ``deep_stem``, ``avg_down``, ``avd``, ``avd_first``, ``reduction_factor``,
            ``drop_block_prob``, ``last_gamma``, ``in_channels``.

    Example:
        >>> import torch
        >>> from resnest_backbones.openmmlab import ResNeStBackbone
        >>> model = ResNeStBackbone(variant='resnest50', out_indices=(1, 3)).eval()
        >>> [tuple(f.shape) for f in model(torch.rand(1, 3, 64, 64))]
        [(1, 512, 8, 8), (1, 2048, 2, 2)]
    """

    def __init__(self, variant: Optional[str] = None, depth: Optional[int] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_cfg: Optional[Dict] = dict(type="BN", requires_grad=True), norm_eval: bool = False,
                 with_cp: bool = False, strides: Optional[Sequence[int]] = None,
                 dilations: Optional[Sequence[int]] = None, output_stride: Optional[int] = None,
                 dilated_layout: str = "official", contract_dilation: bool = True, fast_inference: bool = False,
                 init_cfg=None, **arch):
        self._check_arch_names(arch)
        name = _variant_name(variant, depth)
        out_indices = tuple(out_indices)
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f"out_indices {out_indices} must be a non-empty subset of (0, 1, 2, 3)")
        if not contract_dilation:
            raise ValueError("contract_dilation=False is not supported: ResNeSt's dilated stages contract the first "
                             "block's dilation (mmseg's contract_dilation=True); choose dilated_layout instead")
        kwargs = get_variant(name).kwargs()
        kwargs.update(arch)
        kwargs.update(output_stride=self._output_stride(strides, dilations, output_stride),
                      dilated_layout=dilated_layout, norm_layer=norm_factory(norm_cfg), norm_eval=norm_eval,
                      with_cp=with_cp, frozen_stages=frozen_stages,
                      out_features=[STAGE_NAMES[i] for i in out_indices])
        super().__init__(**kwargs)  # ResNeSt builds the network; BaseModule.__init__ runs with init_cfg=None
        self.init_cfg = copy.deepcopy(init_cfg)
        self.variant = name
        self.out_indices = out_indices
        self.fast_inference = fast_inference
        self._drop_fused()
        if fast_inference:
            from .. import fast_inference  # noqa: F401  fail at build time, not at the first eval forward
        self.register_load_state_dict_post_hook(_drop_fused_after_load)

    @staticmethod
    def _check_arch_names(arch: Dict):
        unknown = [key for key in arch if key not in ARCH_OVERRIDES]
        if unknown:
            valid = sorted(ARCH_OVERRIDES + ("variant", "depth", "out_indices", "frozen_stages", "norm_cfg",
                                             "norm_eval", "with_cp", "strides", "dilations", "output_stride",
                                             "dilated_layout", "contract_dilation", "fast_inference", "init_cfg"))
            hints = [f"{key!r} (did you mean {difflib.get_close_matches(key, valid, 1)[0]!r}?)"
                     if difflib.get_close_matches(key, valid, 1) else repr(key) for key in unknown]
            raise TypeError(f"ResNeStBackbone got unknown argument(s) {', '.join(hints)}. Valid arguments: "
                            f"{', '.join(valid)}")

    @staticmethod
    def _output_stride(strides, dilations, output_stride) -> int:
        if strides is None and dilations is None:
            return 32 if output_stride is None else output_stride
        if strides is None or dilations is None:
            raise ValueError("Give strides and dilations together, e.g. strides=(1, 2, 1, 1), "
                             "dilations=(1, 1, 2, 4)")
        derived = output_stride_of(strides, dilations)
        if output_stride is not None and output_stride != derived:
            raise ValueError(f"output_stride={output_stride} contradicts strides={tuple(strides)}, "
                             f"dilations={tuple(dilations)} (output stride {derived}); give only one")
        return derived

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Tuple of the ``out_indices`` stage features, shallowest first."""
        if self.fast_inference and not self.training:
            return tuple(self._fused_copy().forward_features(x).values())
        return tuple(self.forward_features(x).values())

    def _fused_copy(self) -> ResNeSt:
        if self._fused is None:
            from ..fast_inference import to_fast_inference
            plain = copy.deepcopy(self)
            plain.fast_inference = False
            # Stored outside nn.Module's registry: not a submodule, so not in state_dict() nor in parameters().
            object.__setattr__(self, "_fused", to_fast_inference(plain))
        return self._fused

    def _drop_fused(self):
        object.__setattr__(self, "_fused", None)

    def _apply(self, fn, *args, **kwargs):
        self._drop_fused()  # .to() / .cuda() / .half() do not reach the unregistered copy: rebuild it after
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> "ResNeStBackbone":
        if mode:
            self._drop_fused()  # training changes the weights the fused copy was folded from
        return super().train(mode)

    def init_weights(self):
        """Load ``init_cfg=dict(type='Pretrained', ...)`` through the core's strict loader; other init_cfg types
        go through mmengine. Without init_cfg the core's own initialisation (done at construction) stays."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [cfg for cfg in cfgs if cfg.get("type") == "Pretrained"]
        others = [cfg for cfg in cfgs if cfg.get("type") != "Pretrained"]
        if len(pretrained) > 1:
            raise ValueError(f"ResNeStBackbone got {len(pretrained)} Pretrained init_cfgs; give one")
        if others:
            initialize(self, others)
        if pretrained:
            self._load(pretrained[0])
        self._is_init = True

    def _load(self, cfg: Dict):
        unknown = set(cfg) - {"type", "checkpoint", "prefix", "map_location"}
        if unknown or "checkpoint" not in cfg:
            raise ValueError(f"init_cfg {cfg} must be dict(type='Pretrained', checkpoint=<path, URL or "
                             "'resnest://resnest50'>, prefix=<optional, e.g. 'backbone.'>)")
        source = cfg["checkpoint"]
        if cfg.get("prefix"):
            source = _sub_state(load_state(source), cfg["prefix"], source)
        report = load_pretrained(self, source)
        print_log(f"ResNeStBackbone({self.variant}): loaded {len(report.loaded)} tensors from {report.source} "
                  f"({report.format} layout); skipped {len(report.skipped)} not built here (classifier, unused "
                  "stages)", logger="current")


def _drop_fused_after_load(module: ResNeStBackbone, incompatible_keys) -> None:
    module._drop_fused()  # the fused copy was folded from the weights just replaced


def _sub_state(checkpoint, prefix: str, source) -> Dict[str, torch.Tensor]:
    state = unwrap(checkpoint)  # the core's unwrapping: state_dict / model wrappers, DataParallel prefix
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise ValueError(f"No key of {source} starts with prefix {prefix!r}; first keys: {list(state)[:5]}")
    return sub
