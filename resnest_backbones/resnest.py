"""ResNeSt: the bottleneck block and the network (pure PyTorch, no framework imports).

Module names follow the official ResNeSt and timm checkpoints (``conv1.0 .. conv1.6``, ``bn1``, ``layer1..4``,
``conv2.{conv,bn0,fc1,bn1,fc2}``, ``downsample.{0,1,2}``, ``fc``) so their state dicts load without renaming.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from .layers import DropBlock2D, FrozenBatchNorm2d, NormSpec, make_norm_layer
from .split_attention import SplitAttention

STAGE_NAMES = ("res2", "res3", "res4", "res5")
# How the first block of a dilated (stride-1) stage is laid out; see ResNeSt's ``dilated_layout`` argument.
DILATED_LAYOUTS = {
    #            avd pool in that block   downsample pool before the shortcut conv
    "official": dict(dilated_avd=True, dilated_downsample_pool="identity"),
    "mmseg": dict(dilated_avd=False, dilated_downsample_pool="identity"),
    "timm": dict(dilated_avd=False, dilated_downsample_pool="avg2x2_same"),
}


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
        base_width (int): width per cardinal group at ``planes == 64`` (``bottleneck_width`` of the official code).
        avd (bool): use an average pool for the stride (ResNet-D style). avd_first (bool): pool before conv2.
        force_avd (bool): apply the avd pool even at stride 1 (first block of a dilated stage, official layout).
        dilation (int): dilation (and padding) of the KxK conv.
        reduction_factor (int): split-attention reduction. norm_layer (callable): norm factory.
        drop_block_prob (float): DropBlock probability (0 = none).
    """
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 radix: int = 2, cardinality: int = 1, base_width: int = 64, avd: bool = True,
                 avd_first: bool = False, force_avd: bool = False, dilation: int = 1, reduction_factor: int = 4,
                 norm_layer=nn.BatchNorm2d, drop_block_prob: float = 0.0):
        super().__init__()
        group_width = int(planes * (base_width / 64.0)) * cardinality
        use_avd = avd and (stride > 1 or force_avd)
        conv_stride = 1 if use_avd else stride
        self.radix = radix
        self.avd_first = avd_first

        def drop_block():
            return DropBlock2D(drop_block_prob, 3) if drop_block_prob > 0 else nn.Identity()

        self.conv1 = nn.Conv2d(in_channels, group_width, 1, bias=False)
        self.bn1 = norm_layer(group_width)
        self.drop_block1 = drop_block()
        self.relu = nn.ReLU(inplace=True)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if use_avd else None
        if radix >= 1:
            self.conv2 = SplitAttention(group_width, group_width, 3, conv_stride, dilation, dilation, cardinality,
                                        radix, reduction_factor, norm_layer=norm_layer,
                                        drop_block=drop_block() if drop_block_prob > 0 else None)
            self.bn2 = None
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
        if self.bn2 is not None:
            out = self.relu(self.drop_block2(self.bn2(out)))
        if self.avd_layer is not None and not self.avd_first:
            out = self.avd_layer(out)
        out = self.drop_block3(self.bn3(self.conv3(out)))
        # In place: no backward needs this tensor (norm and DropBlock backward use their inputs), and a fresh
        # block-sized buffer per block costs page faults on CPU (measured: eager ~5% slower than timm without it).
        out += shortcut
        return self.relu(out)


class ResNeSt(nn.Module):
    """ResNeSt network (Zhang et al., "ResNeSt: Split-Attention Networks", 2020).

    Args:
        layers (sequence of 4 ints): blocks per stage.
        radix (int): splits per cardinal group (paper's R). Default: 2.
        cardinality (int): cardinal groups (paper's K). Default: 1.
        base_width (int): bottleneck width per group at the first stage. Default: 64.
        stem_width (int): width of the deep stem's first two convs (the third doubles it). Default: 32.
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
        norm_layer (str or callable): ``'BN'``, ``'SyncBN'``, ``'FrozenBN'``, ``'GN'`` or ``f(num_channels)``.
        drop_block_prob (float): DropBlock probability in stages 3 and 4, training only. Default: 0.
        last_gamma (bool): zero-init the last BN of each block. Default: False.
        out_features (sequence of str): which of ``res2..res5`` ``forward_features`` returns. Default: all four.
        num_classes (int): size of the classification head; 0 builds none. Default: 0.
        final_drop (float): dropout before the classifier. Default: 0.
        frozen_stages (int): -1 trains everything, 0 freezes the stem, k also freezes ``layer1..layer k``.
        norm_eval (bool): keep every BatchNorm in eval mode during training (re-applied by ``train()``).
        with_cp (bool): gradient checkpointing of each block (saves memory, costs a recompute).

    Stages after the last one needed are not built when there is no classification head (DDP would otherwise
    complain about parameters that get no gradient).

    Example:
        >>> model = ResNeSt([3, 4, 6, 3], stem_width=32)
        >>> {k: tuple(v.shape) for k, v in model.forward_features(torch.rand(1, 3, 224, 224)).items()}
        {'res2': (1, 256, 56, 56), 'res3': (1, 512, 28, 28), 'res4': (1, 1024, 14, 14), 'res5': (1, 2048, 7, 7)}
    """

    def __init__(self, layers: Sequence[int], radix: int = 2, cardinality: int = 1, base_width: int = 64,
                 stem_width: int = 32, deep_stem: bool = True, avg_down: bool = True, avd: bool = True,
                 avd_first: bool = False, reduction_factor: int = 4, output_stride: int = 32,
                 dilated_layout: str = "official", norm_layer: NormSpec = "BN", drop_block_prob: float = 0.0,
                 last_gamma: bool = False, out_features: Sequence[str] = STAGE_NAMES, num_classes: int = 0,
                 final_drop: float = 0.0, frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 in_channels: int = 3):
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive block counts, got {list(layers)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if dilated_layout not in DILATED_LAYOUTS:
            raise ValueError(f"dilated_layout must be one of {sorted(DILATED_LAYOUTS)}, got {dilated_layout!r}")
        unknown = [f for f in out_features if f not in STAGE_NAMES]
        if unknown or not out_features:
            raise ValueError(f"out_features {list(out_features)} must be a non-empty subset of {list(STAGE_NAMES)}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")
        layout = DILATED_LAYOUTS[dilated_layout]
        norm = make_norm_layer(norm_layer)
        self.out_features = [f for f in STAGE_NAMES if f in out_features]
        self.num_classes = num_classes
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.frozen_stages = -1

        if deep_stem:
            self.conv1 = nn.Sequential(
                nn.Conv2d(in_channels, stem_width, 3, 2, 1, bias=False), norm(stem_width), nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=False), norm(stem_width), nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width * 2, 3, 1, 1, bias=False))
            channels = stem_width * 2
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            channels = 64
        self.bn1 = norm(channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        last_stage = 4 if num_classes > 0 else max(STAGE_NAMES.index(f) for f in self.out_features) + 1
        self.feature_info: List[Dict] = []
        self.stage_names: List[str] = []
        stride, dilation = 4, 1
        for index in range(last_stage):
            planes = 64 * 2 ** index
            stage_stride = 1 if index == 0 else 2
            previous_dilation = dilation
            if index > 0 and stride >= output_stride:
                dilation *= stage_stride
                stage_stride = 1
            stride *= stage_stride
            blocks = []
            for block_index in range(layers[index]):
                first = block_index == 0
                downsample = None
                if first and (stage_stride != 1 or channels != planes * Bottleneck.expansion):
                    downsample = self._shortcut(channels, planes * Bottleneck.expansion, stage_stride, dilation,
                                                avg_down, layout["dilated_downsample_pool"], norm)
                blocks.append(Bottleneck(
                    channels, planes, stage_stride if first else 1, downsample, radix, cardinality, base_width,
                    avd, avd_first,
                    # Official code: the first block of stages 2-4 pools even at stride 1 (dilated stage).
                    force_avd=first and index > 0 and dilation > 1 and layout["dilated_avd"],
                    # First block of a dilated stage uses the previous (contracted) dilation.
                    dilation=previous_dilation if first else dilation,
                    reduction_factor=reduction_factor, norm_layer=norm,
                    drop_block_prob=drop_block_prob if index >= 2 else 0.0))
                channels = planes * Bottleneck.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            self.stage_names.append(f"layer{index + 1}")
            self.feature_info.append(dict(name=STAGE_NAMES[index], channels=channels, stride=stride,
                                          module=f"layer{index + 1}"))
        self.feature_info = [info for info in self.feature_info if info["name"] in self.out_features]
        self.num_features = channels

        if num_classes > 0:
            self.drop = nn.Dropout(final_drop) if final_drop > 0 else None
            self.fc = nn.Linear(channels, num_classes)
        self._init_weights(last_gamma)
        self.freeze(frozen_stages)

    @staticmethod
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
        return ["conv1", "bn1"] + self.stage_names[:frozen_stages]

    def frozen_modules(self, frozen_stages: int) -> List[nn.Module]:
        return [getattr(self, name) for name in self.frozen_module_names(frozen_stages)]

    def freeze(self, frozen_stages: int) -> "ResNeSt":
        """Stop training the stem and the first ``frozen_stages`` stages (OpenMMLab's ``frozen_stages``; detectron2's
        ``FREEZE_AT`` equals ``frozen_stages + 1``). Their parameters stop requiring grad and their norm layers stay
        in eval mode, also after ``train()``. Returns self."""
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")
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

    # ----- forward
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and self.training and x.requires_grad:
            for block in stage:
                x = cp.checkpoint(block, x, use_reentrant=False)
            return x
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Return ``{name: feature}`` for ``self.out_features`` (strides 4, 8, 16, 32 unless dilated)."""
        if x.dim() != 4:
            raise ValueError(f"ResNeSt expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")
        x = self.forward_stem(x)
        outputs = {}
        for name, stage_name in zip(STAGE_NAMES, self.stage_names):
            x = self._run_stage(getattr(self, stage_name), x)
            if name in self.out_features:
                outputs[name] = x
        return outputs

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)

    def forward(self, x: torch.Tensor):
        """Logits when the model has a classification head, else the ``forward_features`` dict."""
        if self.num_classes > 0:
            x = self.forward_stem(x)
            for stage_name in self.stage_names:
                x = self._run_stage(getattr(self, stage_name), x)
            return self.forward_head(x)
        return self.forward_features(x)
