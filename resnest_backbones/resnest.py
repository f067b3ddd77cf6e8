"""ResNeSt: the bottleneck block and the network (pure PyTorch, no framework imports).

Module names follow the official ResNeSt and timm checkpoints (``conv1.0 .. conv1.6``, ``bn1``, ``layer1..4``,
``conv2.{conv,bn0,fc1,bn1,fc2}``, ``downsample.{0,1,2}``, ``fc``) so their state dicts load without renaming.

The forward passes are straight-line code that every tracer reads (TorchScript, ``torch.fx``, ONNX,
``torch.compile``). Optimisations change a model from outside, by swapping modules for their own subclasses
(``fast_inference.to_fast_inference``, ``memory_efficient.set_memory_efficient``); this module knows none of them.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from .layers import DropBlock2D, FrozenBatchNorm2d, NormSpec, make_norm_layer, single_group
from .split_attention import SplitAttention
from .validation import DILATED_LAYOUTS, STAGE_NAMES, check_argument, check_arguments, stages_built

class _SamePadAvgPool2x2(nn.Module):
    """2x2 stride-1 average pool after zero-padding one row and column at the bottom/right: what timm's
    ``AvgPool2dSame(2, 1)`` computes on the shortcut of a dilated stage (the padded zeros count in the mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, 1)


class Bottleneck(nn.Module):
    """ResNeSt bottleneck: 1x1 conv, KxK split-attention conv (optionally with an avg-pool "avd" stride), 1x1 conv.

    Args:
        in_channels (int): input channels.
        planes (int): base width of the stage; the block outputs ``planes * 4`` channels.
        stride (int): spatial stride of the block. With ``avd`` it is taken by a 3x3 average pool instead of the conv.
        downsample (nn.Module, optional): shortcut projection.
        radix, cardinality (int): split-attention splits and cardinal groups (radix 0 = plain conv + BN).
        base_width (int): width per cardinal group at ``planes == base_channels`` (``bottleneck_width`` of the
            official code). base_channels (int): the first stage's ``planes`` (64 in every published model).
        avd (bool): use an average pool for the stride (ResNet-D style). avd_first (bool): pool before conv2.
        force_avd (bool): apply the avd pool even at stride 1 (first block of a dilated stage, official layout).
        dilation (int): dilation (and padding) of the KxK conv.
        reduction_factor (int): split-attention reduction. norm_layer (callable): norm factory.
        attention_norm_layer (callable, optional): norm of the split-attention vector (default: ``norm_layer``).
        drop_block_prob (float): DropBlock probability (0 = none).
    """
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 radix: int = 2, cardinality: int = 1, base_width: int = 64, avd: bool = True,
                 avd_first: bool = False, force_avd: bool = False, dilation: int = 1, reduction_factor: int = 4,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
                 attention_norm_layer: Optional[Callable[[int], nn.Module]] = None, drop_block_prob: float = 0.0,
                 base_channels: int = 64):
        super().__init__()
        group_width = int(planes * (base_width / base_channels)) * cardinality
        use_avd = avd and (stride > 1 or force_avd)
        conv_stride = 1 if use_avd else stride
        self.avd_first = avd_first

        def drop_block() -> nn.Module:
            return DropBlock2D(drop_block_prob, 3) if drop_block_prob > 0 else nn.Identity()

        self.conv1 = nn.Conv2d(in_channels, group_width, 1, bias=False)
        self.bn1 = norm_layer(group_width)
        self.drop_block1 = drop_block()
        self.relu = nn.ReLU(inplace=True)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if use_avd else None
        if radix >= 1:
            self.conv2 = SplitAttention(group_width, group_width, 3, conv_stride, dilation, dilation, cardinality,
                                        radix, reduction_factor, norm_layer=norm_layer,
                                        attention_norm_layer=attention_norm_layer, drop_block=drop_block())
            self.bn2 = None
            self.drop_block2 = None
        else:
            self.conv2 = nn.Conv2d(group_width, group_width, 3, conv_stride, dilation, dilation,
                                   groups=cardinality, bias=False)
            self.bn2 = norm_layer(group_width)
            self.drop_block2 = drop_block()
        self.conv3 = nn.Conv2d(group_width, planes * self.expansion, 1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.drop_block3 = drop_block()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.drop_block1(self.bn1(self.conv1(x))))
        if self.avd_layer is not None and self.avd_first:
            out = self.avd_layer(out)
        out = self.conv2(out)
        if self.bn2 is not None:  # radix 0: plain conv, norm, DropBlock, ReLU (bn2 and drop_block2 exist together)
            out = self.relu(self.drop_block2(self.bn2(out)))
        if self.avd_layer is not None and not self.avd_first:
            out = self.avd_layer(out)
        out = self.drop_block3(self.bn3(self.conv3(out)))
        # In place: no backward needs this tensor (norm and DropBlock backward use their inputs), and a fresh
        # block-sized buffer per block costs page faults on CPU (measured: eager ~5% slower than timm without it).
        out += shortcut
        return self.relu(out)


class Stage(nn.Sequential):
    """The blocks of one stage, run in order; each block under gradient checkpointing when ``with_cp`` is set and
    the stage trains (activations are recomputed in backward instead of stored)."""

    def __init__(self, *blocks: nn.Module):
        super().__init__(*blocks)
        self.with_cp = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and self.training and not torch.jit.is_scripting() and self._input_needs_grad(x):
            return self._forward_checkpointed(x)
        for block in self:
            x = block(x)
        return x

    @torch.jit.unused
    def _input_needs_grad(self, x: torch.Tensor) -> bool:
        # A torch.fx trace records the plain blocks: checkpointing is a run-time memory policy, not part of the graph.
        return not isinstance(x, torch.fx.Proxy) and x.requires_grad

    @torch.jit.unused
    def _forward_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = cp.checkpoint(block, x, use_reentrant=False)
        return x


class ResNeSt(nn.Module):
    """ResNeSt network (Zhang et al., "ResNeSt: Split-Attention Networks", 2020).

    Args:
        layers (sequence of 4 ints): blocks per stage, each >= 1.
        radix (int): splits per cardinal group (paper's R); 0 builds a plain ResNet-D block. Default: 2.
        cardinality (int): cardinal groups (paper's K), >= 1. Default: 1.
        base_width (int): bottleneck width per group at the first stage, >= 1. Default: 64.
        stem_width (int): width of the deep stem's first two convs (the third doubles it), >= 1. Default: 32.
        deep_stem (bool): three 3x3 convs instead of one 7x7. Default: True.
        avg_down (bool): average-pool then 1x1 conv on strided shortcuts. Default: True.
        avd (bool): average-pool downsampling inside the block. Default: True.
        avd_first (bool): apply that pool before the split-attention conv. Default: False.
        reduction_factor (int): split-attention reduction. Default: 4.
        output_stride (int): 32, 16 or 8; stages past it are dilated instead of strided. Default: 32.
        dilated_layout (str): first block of a dilated stage: ``'official'`` (as the official code and the paper's
            segmentation models: contracted dilation and a 3x3 stride-1 avd pool), ``'mmseg'`` (contracted dilation,
            no avd pool: mmseg's ResNeSt with ``contract_dilation=True``), ``'timm'`` (as ``'mmseg'`` plus timm's 2x2
            same-padded average pool on the shortcut). Default: ``'official'``.
        norm_layer (str or callable): a name of ``layers.NORM_LAYERS`` (``'BN'``, ``'SyncBN'``, ``'FrozenBN'``,
            ``'GN'`` = 32 groups) or ``f(num_channels)``. Default: ``'BN'``.
        attention_norm_layer (str or callable, optional): norm of split attention's 1x1 attention vector (``bn1``).
            Default None: ``norm_layer``, except that a GroupNorm gets ONE group (``layers.single_group``: with 32
            groups over a 1x1 map the attention would carry no signal). Pass ``norm_layer`` itself to build what
            mmdet's, mmseg's and detectron2's GN models build.
        drop_block_prob (float): DropBlock probability in stages 3 and 4, training only. Default: 0.
        last_gamma (bool): zero-init the last BN of each block. Default: False.
        out_features (sequence of str): which of ``res2..res5`` ``forward_features`` returns. Default: all four.
        num_classes (int): size of the classification head; 0 builds none. Default: 0.
        final_drop (float): dropout before the classifier. Default: 0.
        frozen_stages (int): -1 trains everything, 0 freezes the stem, k also freezes ``layer1..layer k``.
        norm_eval (bool): keep every BatchNorm in eval mode during training (re-applied by ``train()``).
        with_cp (bool): gradient checkpointing of each block (saves memory, costs a recompute).
        in_channels (int): input image channels. Default: 3.
        base_channels (int): ``planes`` of the first stage (stage i has ``base_channels * 2**i``, outputs 4x that);
            ``base_width`` is the width per group at this stage. Default: 64.
        strides, dilations (sequence of int, optional): per-stage stride and dilation (4 entries, or ``num_stages``),
            e.g. ``(1, 2, 1, 1)`` and ``(1, 1, 2, 4)`` for output stride 8; any positive values. Default: derived
            from ``output_stride``; give one or the other.
        contract_dilation (bool): the first block of a stage with dilation d > 1 uses ``d // 2`` (as the official
            code, DeepLab and mmseg's ``contract_dilation=True``); False: every block uses d (mmdet). Default: True.
        multi_grid (sequence of int, optional): absolute dilations of the blocks of the last built stage (DeepLabV3's
            multi-grid, as mmseg's ``multi_grid``); entries past its last block are ignored. Default: None.
        num_stages (int, optional): build exactly stages 1..num_stages (1-4). Default: None.

    Without ``num_stages``, stages after the last one needed are not built when there is no classification head
    (DDP would otherwise complain about parameters that get no gradient); their attributes are None.

    Every argument is checked by ``validation.check_arguments`` (a ``ValueError`` naming it). The forward checks its
    input too (a 4-d float tensor with ``in_channels`` channels, at least one image, and at least two in training
    while split attention's attention BatchNorm uses batch statistics), wherever Python runs it: eagerly, in a
    ``torch.fx`` graph (the checks are wrapped functions), in TorchScript (shape checks); not while tracing or
    compiling.

    Example:
        >>> model = ResNeSt([3, 4, 6, 3], stem_width=32)
        >>> {k: tuple(v.shape) for k, v in model.forward_features(torch.rand(1, 3, 224, 224)).items()}
        {'res2': (1, 256, 56, 56), 'res3': (1, 512, 28, 28), 'res4': (1, 1024, 14, 14), 'res5': (1, 2048, 7, 7)}
    """

    # What to do about a training batch of one image; adapters name their own config keys.
    batch_of_one_advice = ("give each process a batch of at least 2 images; or normalise across processes "
                           "(norm_layer='SyncBN'); or keep the BatchNorm statistics fixed (norm_eval=True, or "
                           "norm_layer='FrozenBN'); or use GroupNorm (norm_layer='GN', whose attention norm has one "
                           "group)")

    def __init__(self, layers: Sequence[int], radix: int = 2, cardinality: int = 1, base_width: int = 64,
                 stem_width: int = 32, deep_stem: bool = True, avg_down: bool = True, avd: bool = True,
                 avd_first: bool = False, reduction_factor: int = 4, output_stride: int = 32,
                 dilated_layout: str = "official", norm_layer: NormSpec = "BN",
                 attention_norm_layer: NormSpec = None, drop_block_prob: float = 0.0, last_gamma: bool = False,
                 out_features: Sequence[str] = STAGE_NAMES, num_classes: int = 0, final_drop: float = 0.0,
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False, in_channels: int = 3,
                 base_channels: int = 64, strides: Optional[Sequence[int]] = None,
                 dilations: Optional[Sequence[int]] = None, contract_dilation: bool = True,
                 multi_grid: Optional[Sequence[int]] = None, num_stages: Optional[int] = None):
        super().__init__()
        arguments = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        check_arguments(arguments)
        built = stages_built(num_stages, num_classes, out_features)
        norm = make_norm_layer(norm_layer)
        self.out_features: List[str] = [f for f in STAGE_NAMES if f in out_features]
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.norm_eval = norm_eval
        self.frozen_stages = -1

        self.conv1, self.bn1, channels = _make_stem(in_channels, stem_width, deep_stem, norm)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = self._make_stages(arguments, built, channels, norm)
        self.num_features = channels
        self.drop = nn.Dropout(final_drop) if num_classes > 0 and final_drop > 0 else None
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else None
        self._init_weights(last_gamma)
        self.freeze(frozen_stages)
        self.with_cp = with_cp

    def _make_stages(self, a: Dict, built: int, channels: int, norm: Callable[[int], nn.Module]) -> int:
        """Build ``layer1..layer4`` (None past ``built``) and ``feature_info``; returns the last stage's width."""
        strides, dilations = _stage_layout(a["output_stride"], a["strides"], a["dilations"])
        block_args = dict(radix=a["radix"], cardinality=a["cardinality"], base_width=a["base_width"], avd=a["avd"],
                          avd_first=a["avd_first"], reduction_factor=a["reduction_factor"], norm_layer=norm,
                          base_channels=a["base_channels"],
                          attention_norm_layer=(single_group(norm) if a["attention_norm_layer"] is None
                                                else make_norm_layer(a["attention_norm_layer"])))
        self.layer_names: List[str] = [f"layer{index + 1}" for index in range(built)]
        self.feature_info: List[Dict] = []
        stride = 4
        for index in range(4):
            stage = None
            if index < built:
                planes = a["base_channels"] * 2 ** index
                block_dilations = _block_dilations(a["layers"][index], dilations[index], a["contract_dilation"],
                                                   a["multi_grid"] if index == built - 1 else None)
                stage = _make_stage(channels, planes, strides[index], dilations[index], block_dilations,
                                    a["avg_down"], DILATED_LAYOUTS[a["dilated_layout"]],
                                    a["drop_block_prob"] if index >= 2 else 0.0, block_args)
                channels, stride = planes * Bottleneck.expansion, stride * strides[index]
                if STAGE_NAMES[index] in self.out_features:
                    # num_chs / reduction: timm's names for channels / stride, read by its FX feature extraction.
                    self.feature_info.append(dict(name=STAGE_NAMES[index], channels=channels, stride=stride,
                                                  module=f"layer{index + 1}", num_chs=channels, reduction=stride))
            setattr(self, f"layer{index + 1}", stage)  # None for a stage that is not built
        return channels

    # TorchScript compiles forward only; this Python-side switch stays out of it.
    __jit_unused_properties__ = ["with_cp"]

    @property
    def with_cp(self) -> bool:
        """Gradient checkpointing of every block while training (set on each stage)."""
        return any(getattr(stage, "with_cp", False) for stage in self._stages())

    @with_cp.setter
    def with_cp(self, value: bool) -> None:
        check_argument("with_cp", value)
        for stage in self._stages():
            if isinstance(stage, Stage):
                stage.with_cp = value

    def _stages(self) -> List[nn.Module]:
        return [getattr(self, name) for name in self.layer_names]

    def _init_weights(self, last_gamma: bool):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if last_gamma:
            for module in self.modules():
                if isinstance(module, Bottleneck) and getattr(module.bn3, "weight", None) is not None:
                    nn.init.zeros_(module.bn3.weight)

    # ----- training controls (one implementation for every adapter)
    def frozen_module_names(self, frozen_stages: int) -> List[str]:
        """Attribute names frozen by ``frozen_stages`` (0 = stem, k = stem + layer1..layer k)."""
        if frozen_stages < 0:
            return []
        return ["conv1", "bn1"] + self.layer_names[:frozen_stages]

    def frozen_modules(self, frozen_stages: int) -> List[nn.Module]:
        return [getattr(self, name) for name in self.frozen_module_names(frozen_stages)]

    def freeze(self, frozen_stages: int) -> "ResNeSt":
        """Stop training the stem and the first ``frozen_stages`` stages (OpenMMLab's ``frozen_stages``; detectron2's
        ``FREEZE_AT`` equals ``frozen_stages + 1``). Their parameters stop requiring grad and their norm layers stay
        in eval mode, also after ``train()``. Returns self."""
        check_argument("frozen_stages", frozen_stages)
        self.frozen_stages = frozen_stages
        for module in self.frozen_modules(frozen_stages):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        return self

    def convert_frozen_to_frozen_bn(self) -> "ResNeSt":
        """Replace the BatchNorms of the frozen part by FrozenBatchNorm2d (detectron2's behaviour for FREEZE_AT)."""
        for name in self.frozen_module_names(self.frozen_stages):
            setattr(self, name, FrozenBatchNorm2d.convert_frozen_batchnorm(getattr(self, name)))
        return self

    def train(self, mode: bool = True) -> "ResNeSt":
        super().train(mode)
        if mode:
            for module in self.frozen_modules(self.frozen_stages):
                module.eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    # ----- forward (straight-line and TorchScript-compatible: unbuilt stages are None attributes)
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def _forward_stages(self, x: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """``(the out_features dict, the last built stage's output)``."""
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            check_input_shape(x, self.in_channels)
            if not torch.jit.is_scripting():
                self._check_input_batch_and_dtype(x)
        x = self.forward_stem(x)
        outputs: Dict[str, torch.Tensor] = {}
        # Unrolled on purpose: straight-line code that TorchScript compiles (its stages may be None) and that every
        # tracer reads as it is.
        if self.layer1 is not None:
            x = self.layer1(x)
            if "res2" in self.out_features:
                outputs["res2"] = x
        if self.layer2 is not None:
            x = self.layer2(x)
            if "res3" in self.out_features:
                outputs["res3"] = x
        if self.layer3 is not None:
            x = self.layer3(x)
            if "res4" in self.out_features:
                outputs["res4"] = x
        if self.layer4 is not None:
            x = self.layer4(x)
            if "res5" in self.out_features:
                outputs["res5"] = x
        return outputs, x

    @torch.jit.unused
    def _check_input_batch_and_dtype(self, x: torch.Tensor) -> None:
        weight = next(self.parameters(), None)  # the stem's first conv weight
        one_image_fails = self.training and _attention_uses_batch_statistics(self)
        check_input_batch_and_dtype(x, None if weight is None else weight.dtype, one_image_fails,
                                    self.batch_of_one_advice)

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Return ``{name: feature}`` for ``self.out_features`` (strides 4, 8, 16, 32 unless dilated)."""
        return self._forward_stages(x)[0]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the last stage's feature map (a model built with ``num_classes > 0``)."""
        if self.fc is None:
            raise RuntimeError("This ResNeSt has no classification head: build it with num_classes > 0")
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        """Logits when the model has a classification head, else the ``forward_features`` dict."""
        if self.fc is not None:
            return self.forward_head(self._forward_stages(x)[1])
        return self.forward_features(x)


# ----- construction helpers (torchvision's _make_layer and friends)
def _stage_layout(output_stride: int, strides: Optional[Sequence[int]],
                  dilations: Optional[Sequence[int]]) -> Tuple[List[int], List[int]]:
    """Per-stage ``(strides, dilations)``: given, or derived from ``output_stride`` (stages past it dilate instead
    of striding, DeepLab's atrous stages). ``validation.check_arguments`` has checked that they fit together."""
    if strides is not None:
        return list(strides), list(dilations)
    derived = {32: ((1, 2, 2, 2), (1, 1, 1, 1)), 16: ((1, 2, 2, 1), (1, 1, 1, 2)), 8: ((1, 2, 1, 1), (1, 1, 2, 4))}
    return [list(v) for v in derived[output_stride]]


def _block_dilations(blocks: int, dilation: int, contract: bool, multi_grid: Optional[Sequence[int]]) -> List[int]:
    """Dilation of each block of a stage: ``multi_grid`` as given, else ``dilation``, the first block's contracted to
    ``dilation // 2`` (so it bridges from the previous resolution without gaps)."""
    if multi_grid is not None:
        return list(multi_grid[:blocks])
    first = dilation // 2 if contract and dilation > 1 else dilation
    return [first] + [dilation] * (blocks - 1)


def _make_stem(in_channels: int, stem_width: int, deep_stem: bool,
               norm: Callable[[int], nn.Module]) -> Tuple[nn.Module, nn.Module, int]:
    """``(conv1, bn1, out_channels)``: three 3x3 convs (deep stem, the last one doubling the width) or one 7x7."""
    if not deep_stem:
        return nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), norm(64), 64
    conv1 = nn.Sequential(
        nn.Conv2d(in_channels, stem_width, 3, 2, 1, bias=False), norm(stem_width), nn.ReLU(inplace=True),
        nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=False), norm(stem_width), nn.ReLU(inplace=True),
        nn.Conv2d(stem_width, stem_width * 2, 3, 1, 1, bias=False))
    return conv1, norm(stem_width * 2), stem_width * 2


def _make_stage(in_channels: int, planes: int, stride: int, dilation: int, block_dilations: Sequence[int],
                avg_down: bool, layout: Dict, drop_block_prob: float, block_args: Dict) -> Stage:
    """One stage (torchvision's ``_make_layer``): a first block that changes resolution and/or width, then identical
    blocks; ``block_dilations`` has one entry per block (``_block_dilations``)."""
    out_channels = planes * Bottleneck.expansion
    norm = block_args["norm_layer"]
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = _shortcut(in_channels, out_channels, stride, dilation, avg_down,
                               layout["dilated_downsample_pool"], norm)
    first = Bottleneck(in_channels, planes, stride, downsample,
                       # Official code: the first block of a dilated stage pools even at stride 1.
                       force_avd=dilation > 1 and layout["dilated_avd"],
                       dilation=block_dilations[0], drop_block_prob=drop_block_prob, **block_args)
    rest = [Bottleneck(out_channels, planes, 1, None, dilation=d, drop_block_prob=drop_block_prob, **block_args)
            for d in block_dilations[1:]]
    return Stage(first, *rest)


def _shortcut(in_channels, out_channels, stride, dilation, avg_down, dilated_pool, norm) -> nn.Sequential:
    if not avg_down:
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), norm(out_channels))
    if stride > 1:
        pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
    elif dilation > 1 and dilated_pool == "avg2x2_same":
        pool = _SamePadAvgPool2x2()
    else:
        pool = nn.Identity()
    # Index 0 is the pool (no parameters) even when it is an identity, so keys stay downsample.1 / .2.
    return nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, 1, bias=False), norm(out_channels))


# ----- input checks: wrapped for torch.fx, so a symbolic trace records them as calls instead of tracing into their
# Python conditions, and the traced graph still runs them.
@torch.fx.wrap
def check_input_shape(x: torch.Tensor, in_channels: int) -> None:
    """A ``(N, C, H, W)`` batch of at least one image with ``in_channels`` channels (TorchScript-compatible)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError("ResNeSt expects a torch.Tensor batch (N, C, H, W), got {}: convert it with "
                        "torch.as_tensor(...) and arrange it as (N, C, H, W)".format(type(x).__name__))
    if x.dim() != 4:
        raise ValueError("ResNeSt expects a (N, C, H, W) batch, got a tensor with {} dims (shape {}); add the "
                         "batch dimension with x.unsqueeze(0) for one image".format(x.dim(), list(x.shape)))
    if x.size(0) == 0:
        raise ValueError("ResNeSt got an empty batch (0 images); skip the call when there is nothing to process")
    if x.size(1) != in_channels:
        hint = ""
        if x.size(3) == in_channels:
            hint = "; it looks like (N, H, W, C): use x.permute(0, 3, 1, 2)"
        raise ValueError("ResNeSt expects {} input channels in dim 1 of a (N, C, H, W) batch, got shape {}{}".format(
            in_channels, list(x.shape), hint))


@torch.fx.wrap
def check_input_batch_and_dtype(x: torch.Tensor, dtype: Optional[torch.dtype], one_image_fails: bool,
                                advice: str) -> None:
    """The input's dtype is the model's (or autocast runs), and a training batch has two images where split
    attention's attention BatchNorm needs them (torch would fail later with a message that names no layer)."""
    if dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"ResNeSt input dtype {x.dtype} differs from the model's {dtype}: convert the input "
                        "(x.to(dtype)) or the model (model.to(dtype)), or run under torch.autocast")
    if one_image_fails and x.size(0) == 1:
        raise ValueError("ResNeSt got a training batch of 1 image, but split attention's attention BatchNorm "
                         "(conv2.bn1 of each block, on a 1x1 map) needs at least 2 values per channel in training. "
                         f"Fix: {advice}")


def _attention_uses_batch_statistics(model: nn.Module) -> bool:
    """Whether any split attention of ``model`` normalises its attention vector with this process's batch
    statistics (a BatchNorm in training mode that does not synchronise across several processes)."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1
    for module in model.modules():
        norm = module.bn1 if isinstance(module, SplitAttention) else None
        if isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.training and \
                not (distributed and "Sync" in type(norm).__name__):
            return True
    return False
