"""Small layers shared by the core model and every adapter: DropBlock, FrozenBatchNorm2d, and the one table of
norm layers (``NORM_LAYERS``) that every adapter maps its framework's norm names onto."""
from functools import partial
from typing import Callable, Dict, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

NormSpec = Union[str, Callable[[int], nn.Module], None]


class DropBlock2D(nn.Module):
    """DropBlock (Ghiasi et al. 2018): drops contiguous ``block_size`` x ``block_size`` regions; identity in eval.

    ``drop_prob`` is the fraction of activations dropped; the seed rate ``gamma`` follows the paper's Eq. (1), and
    kept activations are rescaled by the measured keep fraction.
    """

    def __init__(self, drop_prob: float, block_size: int = 3):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropBlock drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob
        self.block_size = block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        return drop_blocks(x, self.drop_prob, self.block_size)

    def sample_keep_mask(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """A random ``(keep, scale)`` for ``x``: ``keep`` is 0/1 with ``x``'s shape, ``forward`` returns
        ``x * keep * scale`` (also used by the memory-efficient training path, which stores ``keep`` as bytes)."""
        return keep_mask(x, self.drop_prob, self.block_size)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}"


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers, never trained).

    Buffer names equal BatchNorm2d's so checkpoints load unchanged; ``num_batches_tracked`` is accepted and ignored.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every BatchNorm (incl. SyncBatchNorm) replaced by a FrozenBatchNorm2d that keeps
        its statistics and affine parameters. Converts in place where it can; returns the (possibly new) module."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = cls(module.num_features, module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen.to(module.running_mean.device if module.running_mean is not None else "cpu")
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                setattr(module, name, new_child)
        return module


def keep_mask(x: torch.Tensor, drop_prob: float, block_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """DropBlock's random ``(keep, scale)`` for ``x`` (see :class:`DropBlock2D`)."""
    height, width = x.shape[-2], x.shape[-1]
    block = min(block_size, height, width)
    valid = max((height - block + 1) * (width - block + 1), 1)
    gamma = drop_prob * height * width / (block ** 2) / valid
    seeds = (torch.rand_like(x) < gamma).to(x.dtype)
    # Grow each seed into a block. Padding block // 2 keeps the size for an odd block; an even block makes the map
    # one row and column larger, and the slice below trims it back.
    dropped = F.max_pool2d(seeds, block, stride=1, padding=block // 2)
    if block % 2 == 0:
        dropped = dropped[..., :height, :width]
    keep = 1.0 - dropped
    return keep, keep.numel() / keep.sum().clamp(min=1.0)


@torch.fx.wrap  # its block size depends on the input's size: a torch.fx trace records one call instead
def drop_blocks(x: torch.Tensor, drop_prob: float, block_size: int) -> torch.Tensor:
    """``x`` with random ``block_size`` x ``block_size`` blocks dropped and the rest rescaled (DropBlock training)."""
    keep, scale = keep_mask(x, drop_prob, block_size)
    return x * keep * scale


def _group_norm(num_channels: int, num_groups: int = 32, **options) -> nn.GroupNorm:
    if num_channels % num_groups:
        raise ValueError(f"norm_layer 'GN' splits each norm's channels into {num_groups} groups, but this network has "
                         f"a norm over {num_channels} channels: choose widths (base_width, stem_width, cardinality) "
                         f"that give multiples of {num_groups}, or another norm (detectron2: MODEL.RESNETS.NORM; "
                         "OpenMMLab: norm_cfg; core: norm_layer).")
    return nn.GroupNorm(num_groups, num_channels, **options)


# The one table of norm layers. Each entry is called as ``entry(num_channels, **options)``; the options are the
# layer's own keyword arguments (``eps``, ``momentum``; ``num_groups`` for GN, default 32). Adapters map their
# framework's names onto these keys (mmcv's ``BN2d`` -> ``BN``, detectron2's ``FrozenBN`` -> ``FrozenBN``, ...).
NORM_LAYERS: Dict[str, Callable[..., nn.Module]] = {
    "BN": nn.BatchNorm2d,
    "SyncBN": nn.SyncBatchNorm,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": _group_norm,
}


def make_norm_layer(norm: NormSpec, requires_grad: bool = True, **options) -> Callable[[int], nn.Module]:
    """Turn ``norm`` into a factory ``f(num_channels) -> nn.Module``.

    Args:
        norm: a key of ``NORM_LAYERS`` (``'BN'``, ``'SyncBN'``, ``'FrozenBN'``, ``'GN'``), a callable
            ``f(num_channels)``, or None (BatchNorm2d).
        requires_grad: False makes the layers' affine parameters fixed (OpenMMLab's ``norm_cfg.requires_grad``).
        **options: keyword arguments of the layer (``eps``, ``momentum``, ``num_groups`` for GN); only with a name.
    """
    if norm is None:
        norm = "BN"
    if callable(norm):
        if options:
            raise ValueError(f"norm options {sorted(options)} need a norm name, not a callable")
        build = norm
    elif norm in NORM_LAYERS:
        build = partial(NORM_LAYERS[norm], **options)
    else:
        raise ValueError(f"Unknown norm_layer {norm!r}: use one of {sorted(NORM_LAYERS)} or a callable "
                         "num_channels -> nn.Module")
    if requires_grad:
        return build

    def build_fixed(num_channels: int) -> nn.Module:
        module = build(num_channels)
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        return module
    return build_fixed


def single_group(norm_layer: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
    """``norm_layer``, except that a GroupNorm it builds gets one group (same eps, affine and ``requires_grad``).

    Used for split attention's ``bn1``, which normalises a 1x1 map: a GroupNorm with several groups normalises each
    group's few values on its own, so with 32 groups over 32 channels every value becomes 0 and the attention
    branch carries no signal. One group (a LayerNorm over the attention vector) keeps it informative.
    """
    def build(num_channels: int) -> nn.Module:
        module = norm_layer(num_channels)
        if not isinstance(module, nn.GroupNorm) or module.num_groups == 1:
            return module
        single = nn.GroupNorm(1, num_channels, eps=module.eps, affine=module.affine)
        if module.affine:
            single = single.to(module.weight)
            single.weight.requires_grad_(module.weight.requires_grad)
            single.bias.requires_grad_(module.bias.requires_grad)
        return single
    return build


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a channels_last tensor (that is not also NCHW-contiguous, as 1x1 maps are), else
    ``torch.contiguous_format``: the layout to give a new tensor that follows ``x``."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
