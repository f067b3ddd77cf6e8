"""mmdet's / mmseg's ``ResNeSt`` arguments, with their meanings, as the core ``ResNeSt``'s keyword arguments.

One function, :func:`core_kwargs`, shared by the two registered classes; they differ only in two defaults
(:class:`FrameworkDefaults`). Imports nothing from mmengine, so the translation is testable on its own.

What mmdet 3.3 / mmseg 1.2 build (their ``ResNeSt`` is a ``ResNetV1d`` with split-attention bottlenecks):

- stem ``stem_channels // 2, stem_channels // 2, stem_channels`` (deep stem), ``stem_channels`` defaulting to
  ``base_channels`` in mmdet and to 64 in mmseg;
- stage i: ``planes = base_channels * 2**i``, bottleneck width ``planes`` when ``groups == 1`` (``base_width`` is
  then ignored), else ``floor(planes * base_width / base_channels) * groups``;
- every block of a stage with dilation d uses d, except mmseg's ``contract_dilation=True`` (the first block uses
  ``d // 2``) and mmseg's ``multi_grid`` (absolute dilations of the last stage's blocks); the avd pool only where
  the block strides (never at stride 1), an identity pool on stride-1 shortcuts: the core's ``'mmseg'`` layout.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

from torch import nn

from ..layers import make_norm_layer
from ..resnest import STAGE_NAMES
from ..validation import check_names
from ..variants import VARIANTS, get_variant

# mmdet's and mmseg's ResNet.arch_settings for bottleneck depths, plus the other published ResNeSt depths.
DEPTH_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3),
                **{int(name[len("resnest"):]): tuple(VARIANTS[name].arch["layers"])
                   for name in ("resnest14", "resnest26", "resnest269")}}
# mmcv's norm types -> the core's NORM_LAYERS names (FrozenBN is this package's addition).
MMCV_NORMS = {"BN": "BN", "BN2d": "BN", "SyncBN": "SyncBN", "GN": "GN", "FrozenBN": "FrozenBN"}


class OpenMMLabArgumentError(ValueError, AssertionError):
    """A bad argument. Also an AssertionError, as mmdet / mmseg raise for the same values (``num_stages``,
    ``style``, ``out_indices``, ...), so code written against their ``ResNeSt`` catches it the same way."""


@dataclass(frozen=True)
class FrameworkDefaults:
    """The defaults in which mmdet's and mmseg's ``ResNet`` differ."""
    norm_eval: bool
    stem_channels: Optional[int]  # None: base_channels (mmdet)


MMDET = FrameworkDefaults(norm_eval=True, stem_channels=None)
MMSEG = FrameworkDefaults(norm_eval=False, stem_channels=64)


def norm_factory(norm_cfg: Optional[Dict], key: str = "norm_cfg") -> Callable[[int], nn.Module]:
    """An mmcv ``norm_cfg`` (``type`` BN / SyncBN / GN / FrozenBN, ``requires_grad``, ``eps``, ``momentum``,
    ``num_groups``) as the core's ``f(num_channels) -> nn.Module`` (``layers.make_norm_layer``)."""
    cfg = dict(type="BN") if norm_cfg is None else dict(norm_cfg)
    norm_type = cfg.pop("type", None)
    if not isinstance(norm_type, str) or norm_type not in MMCV_NORMS:
        raise OpenMMLabArgumentError(f"{key} type {norm_type!r} is not supported by ResNeStBackbone; use one of "
                                     f"{', '.join(MMCV_NORMS)}, e.g. {key}=dict(type='SyncBN', requires_grad=True)")
    if norm_type == "GN" and "num_groups" not in cfg:
        raise OpenMMLabArgumentError(f"{key}=dict(type='GN') needs num_groups, e.g. dict(type='GN', num_groups=32)")
    return make_norm_layer(MMCV_NORMS[norm_type], requires_grad=cfg.pop("requires_grad", True), **cfg)


def check_argument_names(given: Dict, valid: Sequence[str]) -> None:
    """TypeError for names neither framework nor this project knows, with the closest valid name."""
    if "deep_stem" in given or "avg_down" in given:
        raise TypeError("ResNeStBackbone, like mmdet's and mmseg's ResNeSt (a ResNetV1d), always uses the deep stem "
                        "and average-pool shortcuts: remove deep_stem= / avg_down= (theirs raises 'got multiple "
                        "values for keyword argument')")
    check_names(given, valid, owner="ResNeStBackbone")


def _architecture(depth: Optional[int], variant: Optional[str]) -> Dict:
    """Blocks per stage and the defaults a published variant sets (OpenMMLab names)."""
    if variant is not None and depth is not None:
        raise OpenMMLabArgumentError(f"Give depth={depth} or variant={variant!r}, not both (depth= builds what "
                                     "mmdet's ResNeSt of that depth builds, variant= the published model)")
    if variant is not None:
        arch = get_variant(variant).arch  # KeyError with close matches for a typo
        return dict(layers=list(arch["layers"]), stem_channels=2 * arch["stem_width"], groups=arch["cardinality"],
                    base_width=arch["base_width"], radix=arch["radix"], avd_first=arch["avd_first"],
                    reduction_factor=4)
    if depth is None:
        raise OpenMMLabArgumentError("ResNeStBackbone needs depth= (as mmdet's ResNeSt: 50, 101, 152 or 200) or "
                                     f"variant= (a published model: {', '.join(VARIANTS)})")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise OpenMMLabArgumentError(f"depth must be an integer such as 50, got {depth!r} ({type(depth).__name__})"
                                     + (f": write depth={depth.strip()} without quotes" if isinstance(depth, str)
                                        else ""))
    if depth not in DEPTH_BLOCKS:
        raise KeyError(f"invalid depth {depth} for ResNeSt: use one of {sorted(DEPTH_BLOCKS)} (mmdet's and mmseg's "
                       "50, 101, 152, 200, and the published 14, 26, 269), or variant=")
    return dict(layers=list(DEPTH_BLOCKS[depth]))


def _stage_layout(num_stages, strides, dilations, output_stride, dilated_layout, contract_dilation) -> Dict:
    """The core's per-stage layout: OpenMMLab's ``strides``/``dilations`` (their network) or the project's
    ``output_stride`` (the official dilated layout unless ``dilated_layout`` says otherwise)."""
    openmmlab = strides is not None or dilations is not None
    if openmmlab and output_stride is not None:
        raise OpenMMLabArgumentError(f"Give strides/dilations (OpenMMLab) or output_stride={output_stride}, not "
                                     "both, e.g. strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4) is output stride 8")
    if output_stride is not None:
        return dict(output_stride=output_stride, dilated_layout=dilated_layout or "official",
                    contract_dilation=True if contract_dilation is None else contract_dilation)
    strides = tuple((1, 2, 2, 2)[:num_stages] if strides is None else strides)
    dilations = tuple((1, 1, 1, 1)[:num_stages] if dilations is None else dilations)
    if not len(strides) == len(dilations) == num_stages:
        raise OpenMMLabArgumentError(f"strides {strides} and dilations {dilations} need num_stages={num_stages} "
                                     "entries each (as mmdet's ResNet asserts)")
    return dict(strides=strides, dilations=dilations,
                # Without dilated_layout, what mmdet/mmseg build: no avd pool at stride 1, identity shortcut pool,
                # and their contract_dilation default (False); with it, that layout's contraction (True).
                dilated_layout=dilated_layout or "mmseg",
                contract_dilation=(dilated_layout is not None) if contract_dilation is None else contract_dilation)


def _check_unsupported(style, conv_cfg, dcn, plugins) -> None:
    """Arguments of mmdet's ResNeSt this backbone does not honour: refused, never silently reinterpreted."""
    if style not in ("pytorch", "caffe"):
        raise OpenMMLabArgumentError(f"style must be 'pytorch' or 'caffe' (as mmdet's ResNet), got {style!r}")
    if style == "caffe":
        raise OpenMMLabArgumentError("style='caffe' is not supported by ResNeStBackbone: it moves the stride into "
                                     "the first 1x1 conv and drops ResNeSt's avd pool; use style='pytorch' (every "
                                     "ResNeSt config of mmdet and mmseg does)")
    if conv_cfg is not None and dict(conv_cfg).get("type") not in ("Conv", "Conv2d"):
        raise OpenMMLabArgumentError(f"conv_cfg={conv_cfg} is not supported by ResNeStBackbone: only plain "
                                     "convolutions (conv_cfg=None or dict(type='Conv2d'))")
    if dcn is not None:
        raise OpenMMLabArgumentError("dcn is not supported by ResNeStBackbone (deformable split-attention convs are "
                                     "not implemented; use mmdet's ResNeSt for DCN); remove dcn= / stage_with_dcn=")
    if plugins:
        raise OpenMMLabArgumentError("plugins are not supported by ResNeStBackbone (mmdet's ResNeSt builds them "
                                     "with the wrong channels when groups > 1); remove plugins=")


def core_kwargs(defaults: FrameworkDefaults, depth=None, in_channels=3, stem_channels=None, base_channels=64,
                num_stages=4, strides=None, dilations=None, out_indices=(0, 1, 2, 3), style="pytorch",
                frozen_stages=-1, conv_cfg=None, norm_cfg=None, norm_eval=None, dcn=None, plugins=None,
                with_cp=False, groups=None, base_width=None, radix=None, reduction_factor=None,
                avg_down_stride=True, contract_dilation=None, multi_grid=None, variant=None, output_stride=None,
                dilated_layout=None, attention_norm_cfg=None, avd_first=None, drop_block_prob=0.0,
                last_gamma=False) -> Dict:
    """Keyword arguments of the core ``ResNeSt`` that build what mmdet's (``defaults=MMDET``) or mmseg's
    (``MMSEG``) ``ResNeSt`` builds from the same arguments. ``None`` means the variant's value if ``variant`` is
    given, else the framework's default. See ``ResNeStBackbone`` for each argument."""
    _check_unsupported(style, conv_cfg, dcn, plugins)
    if isinstance(num_stages, bool) or num_stages not in (1, 2, 3, 4):
        raise OpenMMLabArgumentError(f"num_stages must be 1, 2, 3 or 4 (as mmdet's ResNet), got {num_stages!r}")
    arch = _architecture(depth, variant)
    given = dict(stem_channels=stem_channels, groups=groups, base_width=base_width, radix=radix,
                 reduction_factor=reduction_factor, avd_first=avd_first)
    arch.update({key: value for key, value in given.items() if value is not None})
    groups, base_width = arch.get("groups", 1), arch.get("base_width", 4)
    stem_channels = arch.get("stem_channels", defaults.stem_channels)
    stem_channels = base_channels if stem_channels is None else stem_channels
    if isinstance(stem_channels, bool) or not isinstance(stem_channels, int) or stem_channels < 2 or \
            stem_channels % 2:
        raise OpenMMLabArgumentError(f"stem_channels must be an even integer >= 2 (the deep stem's convs have "
                                     f"stem_channels // 2, stem_channels // 2, stem_channels), got {stem_channels!r}")
    if isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence):
        raise OpenMMLabArgumentError(f"out_indices must be a sequence of stage indices, e.g. (0, 1, 2, 3) or (3,) "
                                     f"for the last stage alone, got {out_indices!r}")
    out_indices = tuple(out_indices)
    if not out_indices or any(isinstance(i, bool) or i not in range(num_stages) for i in out_indices):
        raise OpenMMLabArgumentError(f"out_indices {out_indices} must be a non-empty subset of "
                                     f"{tuple(range(num_stages))} (stage indices below num_stages={num_stages})")
    kwargs = dict(
        layers=arch["layers"], in_channels=in_channels, stem_width=stem_channels // 2, deep_stem=True,
        avg_down=True, avd=avg_down_stride, avd_first=arch.get("avd_first", False),
        base_channels=base_channels, cardinality=groups,
        # mmdet's width: planes when groups == 1 (base_width ignored), else floor(planes * base_width / base_ch.)
        base_width=base_channels if groups == 1 else base_width,
        radix=arch.get("radix", 2), reduction_factor=arch.get("reduction_factor", 4),
        num_stages=num_stages, multi_grid=multi_grid,
        out_features=[STAGE_NAMES[i] for i in out_indices], frozen_stages=frozen_stages,
        norm_eval=defaults.norm_eval if norm_eval is None else norm_eval, with_cp=with_cp,
        drop_block_prob=drop_block_prob, last_gamma=last_gamma,
        norm_layer=norm_factory(norm_cfg),
        # mmdet and mmseg normalise the attention vector with norm_cfg itself (with GN: the same num_groups).
        attention_norm_layer=norm_factory(attention_norm_cfg if attention_norm_cfg is not None else norm_cfg,
                                          "attention_norm_cfg" if attention_norm_cfg is not None else "norm_cfg"))
    kwargs.update(_stage_layout(num_stages, strides, dilations, output_stride, dilated_layout, contract_dilation))
    return kwargs


def describe(depth: Optional[int], variant: Optional[str]) -> str:
    """A short name for log lines: the variant, or ``depth=N``."""
    return variant if variant is not None else f"depth={depth}"
