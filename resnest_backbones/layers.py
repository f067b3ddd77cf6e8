"""Small layers shared by the core model and every adapter: DropBlock, FrozenBatchNorm2d, norm-layer selection."""
from functools import partial
from typing import Callable, Union

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
        height, width = x.shape[-2:]
        block = min(self.block_size, height, width)
        valid = max((height - block + 1) * (width - block + 1), 1)
        gamma = self.drop_prob * height * width / (block ** 2) / valid
        seeds = (torch.rand_like(x) < gamma).to(x.dtype)
        # Grow each seed into a block; odd padding keeps the spatial size for any block size.
        dropped = F.max_pool2d(seeds, block, stride=1, padding=block // 2)
        if block % 2 == 0:
            dropped = dropped[..., :height, :width]
        keep = 1.0 - dropped
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))

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


NORM_LAYERS = {
    "BN": nn.BatchNorm2d,
    "SyncBN": nn.SyncBatchNorm,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": partial(nn.GroupNorm, 32),
}


def make_norm_layer(norm: NormSpec) -> Callable[[int], nn.Module]:
    """Turn ``norm`` (one of ``NORM_LAYERS``' names, a callable ``f(num_channels)``, or None for BN) into a callable."""
    if norm is None:
        return nn.BatchNorm2d
    if callable(norm):
        return norm
    if norm not in NORM_LAYERS:
        raise ValueError(f"Unknown norm_layer {norm!r}: use one of {sorted(NORM_LAYERS)} or a callable "
                         "num_channels -> nn.Module")
    return NORM_LAYERS[norm]
