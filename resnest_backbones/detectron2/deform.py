"""Deformable 3x3 convolutions in ResNeSt blocks (detectron2's ``MODEL.RESNETS.DEFORM_*`` keys), as the
detectron2-ResNeSt fork builds them, on detectron2's own deformable-convolution layers.

In each block of a stage with ``DEFORM_ON_PER_STAGE`` the 3x3 convolution (the split-attention convolution, or the
plain one at radix 0) becomes a deformable convolution steered by an offset convolution over the same input
(3x3, same stride and dilation, ``groups = DEFORM_NUM_GROUPS``, zero-initialised, with bias). Modulated
(``DEFORM_MODULATED``): the offset convolution gives ``27 * G`` channels, the first two thirds the x/y offsets and the
last third the mask logits (sigmoid); otherwise ``18 * G`` offsets. One offset field serves every radix split.

The offset convolution is a child of the deformable one (``<conv>.offset``), so state-dict keys are the official
names plus ``.offset.weight/.bias``; the fork's ``conv2_offset`` maps there (``resnest_backbones.keymaps``).

Running needs detectron2's compiled CUDA ops: detectron2 raises on CPU (the offline fallback has no compiled ops at
all); the model still builds, saves and loads its weights on CPU.
"""
from typing import Sequence

import torch
from detectron2.layers import DeformConv, ModulatedDeformConv
from torch import nn

from ..resnest import Bottleneck, ResNeSt

CPU_MESSAGE = ("MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convolution runs only with detectron2's compiled ops "
               "on a CUDA device ({reason}). This model builds, saves and loads its weights on CPU; to run it, use a "
               "GPU with detectron2 built from its source, or set MODEL.RESNETS.DEFORM_ON_PER_STAGE to all False "
               "for a model trained without deformable convolution.")


def _square(conv: nn.Conv2d) -> dict:
    """Stride, padding and dilation as single ints: detectron2's modulated kernel passes each one for both axes."""
    for name in ("stride", "padding", "dilation"):
        if len(set(getattr(conv, name))) != 1:
            raise ValueError(f"deformable convolution needs the same {name} on both axes, got {getattr(conv, name)}")
    return {name: getattr(conv, name)[0] for name in ("stride", "padding", "dilation")}


def _offset_conv(conv: nn.Conv2d, channels: int, groups: int) -> nn.Conv2d:
    offset = nn.Conv2d(conv.in_channels, channels * groups, 3, conv.stride, conv.padding, conv.dilation,
                       groups=groups)
    nn.init.zeros_(offset.weight)  # start as the plain convolution: no offset, mask 0.5 everywhere
    nn.init.zeros_(offset.bias)
    return offset


class _Deformable:
    """Shared forward: the offset field from the input, then detectron2's deformable convolution."""

    def _run(self, x: torch.Tensor, *fields: torch.Tensor) -> torch.Tensor:
        try:
            return super().forward(x, *fields)
        except NotImplementedError as error:
            raise NotImplementedError(CPU_MESSAGE.format(reason=error)) from error


class ModulatedDeformConvWithOffset(_Deformable, ModulatedDeformConv):
    """detectron2's ``ModulatedDeformConv`` replacing ``conv``, with its offset/mask convolution as ``offset``."""

    def __init__(self, conv: nn.Conv2d, deformable_groups: int):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, groups=conv.groups,
                         deformable_groups=deformable_groups, bias=conv.bias is not None, **_square(conv))
        self.offset = _offset_conv(conv, 27, deformable_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset_x, offset_y, mask = torch.chunk(self.offset(x), 3, dim=1)
        return self._run(x, torch.cat((offset_x, offset_y), dim=1), mask.sigmoid())


class DeformConvWithOffset(_Deformable, DeformConv):
    """detectron2's ``DeformConv`` replacing ``conv``, with its offset convolution as ``offset``."""

    def __init__(self, conv: nn.Conv2d, deformable_groups: int):
        if conv.bias is not None:
            raise ValueError("detectron2's DeformConv has no bias; the replaced convolution has one")
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, groups=conv.groups,
                         deformable_groups=deformable_groups, bias=False, **_square(conv))
        self.offset = _offset_conv(conv, 18, deformable_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.offset(x))


def make_deformable(model: ResNeSt, on_per_stage: Sequence[bool], modulated: bool, groups: int) -> ResNeSt:
    """Turn the 3x3 convolution of every block in the stages flagged by ``on_per_stage`` (res2..res5) into a
    deformable one (see the module docstring). Modifies ``model`` in place and returns it.

    Args:
        model: a ResNeSt (or ``ResNeStBackbone``).
        on_per_stage: four booleans, detectron2's ``MODEL.RESNETS.DEFORM_ON_PER_STAGE``.
        modulated: detectron2's ``DEFORM_MODULATED`` (DCN v2 with a mask, else v1).
        groups: detectron2's ``DEFORM_NUM_GROUPS`` (deformable groups, also the offset convolution's groups).
    """
    if len(on_per_stage) != 4:
        raise ValueError(f"MODEL.RESNETS.DEFORM_ON_PER_STAGE must have 4 booleans (res2..res5), got {on_per_stage}")
    layer = ModulatedDeformConvWithOffset if modulated else DeformConvWithOffset
    for name, on in zip(("layer1", "layer2", "layer3", "layer4"), on_per_stage):
        stage = getattr(model, name)
        if not on or stage is None:
            continue
        for block in stage:
            if not isinstance(block, Bottleneck):
                raise TypeError(f"{name} holds {type(block).__name__}, not a ResNeSt Bottleneck")
            owner, attribute = (block, "conv2") if isinstance(block.conv2, nn.Conv2d) else (block.conv2, "conv")
            conv = getattr(owner, attribute)
            if conv.in_channels % groups:
                raise ValueError(f"MODEL.RESNETS.DEFORM_NUM_GROUPS {groups} must divide the {conv.in_channels} input "
                                 f"channels of {name}'s 3x3 convolutions")
            deformable = layer(conv, groups).to(conv.weight.device)
            if not conv.weight.is_meta:
                with torch.no_grad():
                    deformable.weight.copy_(conv.weight)  # keep the network's initialisation
            setattr(owner, attribute, deformable)
    return model
