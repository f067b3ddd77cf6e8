"""ResNeSt as a detectron2 ``Backbone``, and its builders in ``BACKBONE_REGISTRY``.

The backbone IS the core network (``ResNeStBackbone`` subclasses ``resnest_backbones.ResNeSt``), so its state-dict
keys are the official/timm names, freezing is the core's, and checkpoints map with ``resnest_backbones.keymaps``.
Wrapped by FPN it is ``backbone.bottom_up``, hence detector keys ``backbone.bottom_up.<official name>``.
"""
from functools import partial
from typing import Dict, List, Sequence

from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7

from ..fast_inference import FastInferenceOption
from ..layers import NORM_LAYERS, make_norm_layer
from ..memory_efficient import set_memory_efficient
from ..resnest import STAGE_NAMES, ResNeSt
from ..validation import check_choice, check_integer
from ..variants import get_variant
from .deform import make_deformable

# MODEL.RESNEST key -> ResNeSt argument, for the architecture keys that override the variant when set.
_ARCH_KEYS = {"LAYERS": "layers", "RADIX": "radix", "CARDINALITY": "cardinality", "BASE_WIDTH": "base_width",
              "STEM_WIDTH": "stem_width", "DEEP_STEM": "deep_stem", "AVG_DOWN": "avg_down", "AVD": "avd",
              "AVD_FIRST": "avd_first", "REDUCTION_FACTOR": "reduction_factor"}


class ResNeStBackbone(FastInferenceOption, ResNeSt, Backbone):
    """The core ResNeSt with detectron2's ``Backbone`` contract: ``forward`` returns ``{res2..res5}`` (those in
    ``out_features``), ``output_shape()`` gives their ``ShapeSpec``. Accepts every ``ResNeSt`` argument, plus:

    Args:
        fast_inference (bool): in eval mode, run a fused copy (``resnest_backbones.fast_inference``;
            ``MODEL.RESNEST.FAST_INFERENCE``). Default: False.
        memory_efficient (bool): train with ``resnest_backbones.memory_efficient`` (``MODEL.RESNEST.MEMORY_EFFICIENT``).
            Default: False.

    Example:
        >>> net = ResNeStBackbone([3, 4, 6, 3], out_features=["res4", "res5"])
        >>> {k: (v.channels, v.stride) for k, v in net.output_shape().items()}
        {'res4': (1024, 16), 'res5': (2048, 32)}
    """

    batch_of_one_advice = ("SOLVER.IMS_PER_BATCH >= 2 images per process; or MODEL.RESNETS.NORM 'SyncBN' / "
                           "'naiveSyncBN' across processes; or fixed statistics (MODEL.RESNETS.NORM 'FrozenBN'); or "
                           "MODEL.RESNETS.NORM 'GN'")

    def __init__(self, *args, fast_inference: bool = False, memory_efficient: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._out_features = list(self.out_features)
        self._out_feature_channels = {f["name"]: f["channels"] for f in self.feature_info}
        self._out_feature_strides = {f["name"]: f["stride"] for f in self.feature_info}
        set_memory_efficient(self, memory_efficient)
        self._init_fast_inference(fast_inference)

    def forward(self, x):
        if self._runs_fused():
            return self._fused_features(x)
        return self.forward_features(x)


# The yacs keys that select a norm layer: backbone, FPN, box and mask heads, semantic segmentation head.
NORM_KEYS = ("MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM", "MODEL.ROI_MASK_HEAD.NORM",
             "MODEL.SEM_SEG_HEAD.NORM")


def sync_bn_keys(cfg, keys: Sequence[str] = NORM_KEYS) -> List[str]:
    """The keys of ``keys`` whose value in the yacs ``cfg`` is ``SyncBN``."""
    found = []
    for key in keys:
        node = cfg
        for part in key.split("."):
            node = node.get(part) if hasattr(node, "get") else None
        if node == "SyncBN":
            found.append(key)
    return found


def norm_layer_of(norm, key: str = "MODEL.RESNETS.NORM"):
    """A detectron2 norm (a name, or a callable ``f(num_channels)`` as in LazyConfig) as the core's norm factory;
    ``key`` names the setting in error messages."""
    if callable(norm):
        return norm
    if not norm:
        raise ValueError(f"{key} is empty: a ResNeSt needs a norm layer. Set it to one of FrozenBN, BN, SyncBN, "
                         "naiveSyncBN, GN.")
    if norm in NORM_LAYERS:  # the same names as detectron2's (GN: 32 groups, as its get_norm)
        return make_norm_layer(norm)
    # Any other name (naiveSyncBN, nnSyncBN, LN, ...) is detectron2's own layer, built by its get_norm.
    try:
        get_norm(norm, 32)  # fail here, naming the key, rather than deep inside the network
    except (KeyError, ValueError) as error:
        raise ValueError(f"{key} {norm!r} is not a detectron2 norm ({error}); use one of FrozenBN, BN, SyncBN, "
                         "naiveSyncBN, GN") from None
    return partial(get_norm, norm)


def resnest_backbone(variant: str = "resnest50", *, norm="FrozenBN", freeze_at: int = 0,
                     out_features: Sequence[str] = STAGE_NAMES, **overrides) -> "ResNeStBackbone":
    """The ResNeSt backbone with detectron2's argument conventions, for LazyConfig (``L(resnest_backbone)(...)``),
    as ``L(ResNet)(...)`` is for detectron2's ResNet.

    Args:
        variant: published variant giving the architecture (``resnest_backbones.list_models()``).
        norm: a detectron2 norm name (``FrozenBN``, ``BN``, ``SyncBN``, ``naiveSyncBN``, ``GN``, ...) or a callable
            ``f(num_channels)``; detectron2's ``get_norm`` semantics.
        freeze_at: detectron2's ``freeze_at``: 0 nothing, 1 the stem, 2 stem + res2, ... 5 everything; frozen
            BatchNorms become FrozenBatchNorm2d (keeping their statistics), as in detectron2's ResNet.
        out_features: which of ``res2..res5`` to return.
        **overrides: any other ``ResNeSt`` argument (``radix``, ``avd``, ``output_stride``, ``with_cp``, ...).
    """
    try:
        arch = get_variant(variant).kwargs()
    except KeyError as error:
        raise KeyError(f"variant: {error.args[0]}") from None
    arch.update(overrides)
    model = ResNeStBackbone(norm_layer=norm_layer_of(norm, "norm"), frozen_stages=frozen_stages_of(freeze_at),
                            out_features=out_features, **arch)
    model.variant = variant
    return model.convert_frozen_to_frozen_bn()


def resnest_kwargs(cfg) -> Dict:
    """Translate the config into ``ResNeSt`` arguments (the variant, then each set ``MODEL.RESNEST`` key)."""
    rcfg = cfg.MODEL.RESNEST
    try:
        arch = get_variant(rcfg.VARIANT).kwargs()
    except KeyError as error:
        raise KeyError(f"MODEL.RESNEST.VARIANT: {error.args[0]}") from None
    arch.update({arg: rcfg[key] for key, arg in _ARCH_KEYS.items() if rcfg[key] is not None})
    dilation = cfg.MODEL.RESNETS.RES5_DILATION
    check_choice("MODEL.RESNETS.RES5_DILATION", dilation, (1, 2))
    arch.update(out_features=cfg.MODEL.RESNETS.OUT_FEATURES, output_stride=16 if dilation == 2 else 32,
                dilated_layout=rcfg.DILATED_LAYOUT, norm_layer=norm_layer_of(cfg.MODEL.RESNETS.NORM),
                drop_block_prob=rcfg.DROP_BLOCK_PROB, last_gamma=rcfg.LAST_GAMMA, with_cp=rcfg.WITH_CP,
                memory_efficient=rcfg.MEMORY_EFFICIENT, fast_inference=rcfg.FAST_INFERENCE,
                frozen_stages=frozen_stages_of(cfg.MODEL.BACKBONE.FREEZE_AT, "MODEL.BACKBONE.FREEZE_AT"))
    return arch


def frozen_stages_of(freeze_at: int, key: str = "freeze_at") -> int:
    """The core's ``frozen_stages`` for detectron2's ``freeze_at`` (0 nothing, 1 the stem, 2 stem + res2, ...: it
    counts the stem as stage 1, the core as stage 0)."""
    check_integer(key, freeze_at, 0, 5)
    return freeze_at - 1


# ResNeSt argument -> the config key that sets it, to name the key in the core's argument errors.
_KEY_OF_ARGUMENT = {**{arg: f"MODEL.RESNEST.{key}" for key, arg in _ARCH_KEYS.items()},
                    **{arg: f"MODEL.RESNEST.{arg.upper()}" for arg in (
                        "dilated_layout", "drop_block_prob", "last_gamma", "with_cp", "memory_efficient",
                        "fast_inference")},
                    "out_features": "MODEL.RESNETS.OUT_FEATURES",
                    "in_channels": "MODEL.PIXEL_MEAN (one entry per input channel)"}


def _name_config_key(error: Exception) -> Exception:
    """The core's argument error (its message starts with the argument, e.g. ``radix must be ...``) with the config
    key prepended."""
    message = str(error)
    key = _KEY_OF_ARGUMENT.get(message.split(" ", 1)[0].split("[", 1)[0])
    return type(error)(f"{key}: {message}") if key else error


@BACKBONE_REGISTRY.register()
def build_resnest_backbone(cfg, input_shape: ShapeSpec) -> ResNeStBackbone:
    """``MODEL.BACKBONE.NAME: build_resnest_backbone``: the plain ResNeSt (C4 / DC5 detectors, or FPN bottom-up).

    As detectron2's ResNet, the frozen part's BatchNorms become FrozenBatchNorm2d, keeping their statistics, and
    ``MODEL.RESNETS.DEFORM_*`` make the 3x3 convolutions of the chosen stages deformable (``deform.py``).
    """
    kwargs = resnest_kwargs(cfg)
    try:
        model = ResNeStBackbone(in_channels=input_shape.channels, **kwargs)
    except (ValueError, TypeError) as error:
        raise _name_config_key(error) from None
    model.variant = cfg.MODEL.RESNEST.VARIANT
    r = cfg.MODEL.RESNETS
    if any(r.DEFORM_ON_PER_STAGE):
        make_deformable(model, r.DEFORM_ON_PER_STAGE, r.DEFORM_MODULATED, r.DEFORM_NUM_GROUPS)
    return model.convert_frozen_to_frozen_bn()


def _fpn(cfg, bottom_up: Backbone, top_block) -> FPN:
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=top_block, fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_resnest_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """``build_resnest_backbone`` under an FPN with a max-pooled P6 (Faster/Mask/Cascade R-CNN)."""
    return _fpn(cfg, build_resnest_backbone(cfg, input_shape), LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_retinanet_resnest_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """``build_resnest_backbone`` under an FPN with P6/P7 convs on res5 (RetinaNet-style heads)."""
    bottom_up = build_resnest_backbone(cfg, input_shape)
    channels = bottom_up.output_shape()["res5"].channels if "res5" in bottom_up.output_shape() else None
    if channels is None:
        raise ValueError("build_retinanet_resnest_fpn_backbone puts P6/P7 on res5: add res5 to "
                         "MODEL.RESNETS.OUT_FEATURES")
    return _fpn(cfg, bottom_up, LastLevelP6P7(channels, cfg.MODEL.FPN.OUT_CHANNELS))
