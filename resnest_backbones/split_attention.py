"""Split-attention convolution (ResNeSt, Zhang et al. 2020, Sec. 3 and Fig. 2).

Submodule names (``conv``, ``bn0``, ``fc1``, ``bn1``, ``fc2``) match the official and timm checkpoints: weight
compatibility requires them.
"""
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn


class RadixSoftmax(nn.Module):
    """Softmax over the ``radix`` splits of each cardinal group; sigmoid gating when ``radix == 1``.

    ``fc2`` emits its channels cardinal-group-major (``[cardinality, radix, C/cardinality]``, because it is a grouped
    conv with ``groups=cardinality``); the splits of the main branch are radix-major. The transpose below turns the
    former into the latter, so the result lines up with ``torch.split(x, C, dim=1)`` of the conv output.
    """

    def __init__(self, radix: int, cardinality: int):
        super().__init__()
        self.radix = radix
        self.cardinality = cardinality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.size(0)
        if self.radix > 1:
            x = x.view(batch, self.cardinality, self.radix, x.size(1) // (self.cardinality * self.radix))
            return F.softmax(x.transpose(1, 2), dim=1).reshape(batch, x.size(1) * x.size(2) * x.size(3))
        return torch.sigmoid(x)


class SplitAttention(nn.Module):
    """KxK convolution with split attention over ``radix`` feature-map groups.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels (``C``); the conv produces ``C * radix`` channels, radix-major.
        kernel_size, stride, padding, dilation (int): of the KxK convolution.
        cardinality (int): number of cardinal groups (``groups`` of the paper). Default: 1.
        radix (int): number of splits within a cardinal group. Default: 2.
        reduction_factor (int): the attention width is
            ``max(in_channels * radix // reduction_factor, min_attention_width)``.
            Default: 4.
        min_attention_width (int): lower bound of the attention width. Default: 32.
        norm_layer (callable): ``norm_layer(num_channels)`` returns a normalisation module (``bn0``). Default:
            BatchNorm2d.
        attention_norm_layer (callable, optional): the norm of the 1x1 attention vector (``bn1``). Default:
            ``norm_layer``. ``ResNeSt`` passes ``layers.single_group(norm_layer)`` unless told otherwise.
        drop_block (nn.Module, optional): applied after ``bn0`` (DropBlock in stages 3 and 4 of the paper).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, cardinality: int = 1, radix: int = 2,
                 reduction_factor: int = 4, min_attention_width: int = 32,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
                 attention_norm_layer: Optional[Callable[[int], nn.Module]] = None,
                 drop_block: Optional[nn.Module] = None):
        super().__init__()
        if radix < 1:
            raise ValueError(f"SplitAttention needs radix >= 1, got {radix}; use a plain conv for radix 0")
        if in_channels % (cardinality * radix) or out_channels % cardinality:
            raise ValueError(f"in_channels={in_channels} must divide by cardinality*radix={cardinality * radix} and "
                             f"out_channels={out_channels} by cardinality={cardinality}")
        attention_width = max(in_channels * radix // reduction_factor, min_attention_width)
        self.radix = radix
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels * radix, kernel_size, stride, padding, dilation,
                              groups=cardinality * radix, bias=False)
        self.bn0 = norm_layer(out_channels * radix)
        self.drop_block = drop_block if drop_block is not None else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(out_channels, attention_width, 1, groups=cardinality)
        self.bn1 = (attention_norm_layer or norm_layer)(attention_width)
        self.fc2 = nn.Conv2d(attention_width, out_channels * radix, 1, groups=cardinality)
        self.rsoftmax = RadixSoftmax(radix, cardinality)

    def attention(self, gap: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, radix, C, 1, 1)`` (radix-major, as the splits) from the pooled ``(B, C, 1, 1)``
        sum of the splits. Shared by this eager forward and the memory-efficient training path."""
        attention = self.rsoftmax(self.fc2(self.relu(self.bn1(self.fc1(gap)))))
        return attention.view(gap.size(0), self.radix, self.out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.drop_block(self.bn0(self.conv(x))))
        batch, height, width = x.size(0), x.size(2), x.size(3)
        # (B, radix, C, H, W): summing over dim 1 adds the splits without a Python loop (radix 1: a view of x).
        splits = x.view(batch, self.radix, self.out_channels, height, width)
        gap = splits.sum(dim=1).mean((2, 3), keepdim=True) if self.radix > 1 else x.mean((2, 3), keepdim=True)
        attention = self.attention(gap)
        if self.radix == 1:
            return x * attention.view(batch, self.out_channels, 1, 1)
        return (splits * attention).sum(dim=1)
