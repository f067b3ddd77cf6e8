"""ResNeSt as an OpenMMLab backbone: a drop-in for mmdet's and mmseg's own ``ResNeSt`` (imports mmengine only).

``resnest_backbones.mmdet`` / ``resnest_backbones.mmseg`` register it in their framework's ``MODELS`` as
``ResNeStBackbone`` (the frameworks already register a ``ResNeSt``), with that framework's defaults. A backbone
dict of their ``ResNeSt`` with only ``type`` changed builds the same network: the same parameters and, given the
same weights (their checkpoints load through ``keymaps``), the same outputs.

The class *is* the core ``ResNeSt`` (subclass), so its state-dict keys are the official/timm names and a detector
checkpoint stores them under ``backbone.``; ``arguments.py`` translates the OpenMMLab arguments.
"""
import copy
import inspect
import warnings
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import initialize

from ..fast_inference import FastInferenceOption
from ..memory_efficient import set_memory_efficient
from ..resnest import ResNeSt
from .arguments import MMDET, FrameworkDefaults, OpenMMLabArgumentError, check_argument_names, core_kwargs, describe
from .weights import load_init_cfg


class OpenMMLabResNeStBackbone(FastInferenceOption, ResNeSt, BaseModule):
    """ResNeSt backbone for MMDetection / MMSegmentation: the shared class of ``resnest_backbones.mmdet``'s
    ``MMDetResNeStBackbone`` and ``resnest_backbones.mmseg``'s ``MMSegResNeStBackbone``, each registered as
    ``ResNeStBackbone`` in its framework's ``MODELS``.

    Takes every argument of mmdet 3.3's and mmseg 1.2's ``ResNeSt`` with their meaning, so their configs work with
    only ``type`` changed; the defaults are the registry's framework's (``norm_eval``: mmdet True, mmseg False;
    ``stem_channels``: mmdet ``base_channels``, mmseg 64). ``depth`` is keyword-only in practice, as theirs.

    Args:
        depth (int): 50, 101, 152 or 200 (also the published 14, 26, 269). Give this or ``variant``.
        in_channels (int): input channels. Default: 3.
        stem_channels (int, optional): deep stem widths ``stem_channels // 2, // 2, stem_channels`` (even).
            Default: mmdet ``base_channels``, mmseg 64 (or the variant's).
        base_channels (int): stage i has ``base_channels * 2**i`` planes (outputs 4x that). Default: 64.
        num_stages (int): stages built, 1-4 (all of them, whatever ``out_indices`` is, as theirs). Default: 4.
        strides, dilations (Sequence[int]): one per stage. Default: (1, 2, 2, 2), (1, 1, 1, 1).
        out_indices (Sequence[int]): stages returned, shallowest first. Default: (0, 1, 2, 3).
        style (str): ``'pytorch'`` only (``'caffe'`` is refused). frozen_stages (int): -1 none, 0 the stem, k the
            stem and stages 1..k (parameters frozen, norms in eval). Default: -1.
        conv_cfg (dict, optional): None or ``dict(type='Conv2d')`` only.
        norm_cfg (dict): ``dict(type='BN' | 'SyncBN' | 'GN' | 'FrozenBN', requires_grad=True, ...)``; GN needs
            ``num_groups``. The split-attention norm uses it too, as mmdet, unless ``attention_norm_cfg`` is given.
        norm_eval (bool, optional): BatchNorms stay in eval mode in training. Default: mmdet True, mmseg False.
        dcn, plugins: must be None (not supported; refused). stage_with_dcn: ignored without dcn, as theirs.
        with_cp (bool): gradient checkpointing per block. Default: False.
        zero_init_residual (bool): accepted; no effect, as in their ResNeSt (its zero-init only applies to
            ResNet's own blocks). Use ``last_gamma=True`` to zero-init each block's last norm.
        pretrained (str, optional): deprecated, as theirs: becomes ``init_cfg=dict(type='Pretrained', ...)``.
        init_cfg (dict or list[dict], optional): ``dict(type='Pretrained', checkpoint=...)`` with a path, URL,
            ``'open-mmlab://resnest50'`` (resolved and cached as mmengine does), ``'resnest://resnest50'`` (the
            official ImageNet weights) in any layout of ``keymaps``; ``prefix='backbone.'`` picks a sub-state.
            Loaded strictly (a mismatch raises, listing the keys). Other types go through mmengine.
        groups (int): cardinality. base_width (int): width per group at the first stage, ignored when
            ``groups == 1`` (as theirs). radix (int), reduction_factor (int): split attention. Defaults: 1, 4, 2, 4.
        avg_down_stride (bool): stride with a 3x3 average pool after the split-attention conv. Default: True.
        contract_dilation (bool, optional): the first block of a stage with dilation d > 1 uses ``d // 2``
            (mmseg). Default: False (theirs), True with ``dilated_layout`` or ``output_stride``.
        multi_grid (Sequence[int], optional): absolute dilations of the last stage's blocks (mmseg).
        variant (str, optional): a published model (``resnest_backbones.list_models()``), e.g.
            ``'resnest50_fast_2s2x40d'``; sets the defaults of the architecture arguments above.
        output_stride (int, optional): 8, 16 or 32 instead of strides/dilations, with the official dilated layout.
        dilated_layout (str, optional): first block of a dilated stage: ``'official'`` (official code, the paper's
            segmentation models), ``'mmseg'`` (mmdet's / mmseg's ResNeSt) or ``'timm'``. Default: ``'mmseg'`` with
            strides/dilations, ``'official'`` with ``output_stride``.
        attention_norm_cfg (dict, optional): norm of the split-attention vector; e.g. with
            ``norm_cfg=dict(type='GN', num_groups=32)``, ``dict(type='GN', num_groups=1)`` keeps the attention
            informative (32 groups over its 32-channel 1x1 map leave one value per group: no signal).
        avd_first (bool), drop_block_prob (float), last_gamma (bool): the core's options (pool before the
            split-attention conv; DropBlock in stages 3-4; zero-init each block's last norm).
        fast_inference (bool): in eval mode, run a copy with BatchNorm folded into the convolutions
            (``resnest_backbones.fast_inference``); made at the first eval forward, dropped by ``train()`` and
            ``load_state_dict``. Default: False.
        memory_efficient (bool): train with the formulation of ``resnest_backbones.memory_efficient``: the same
            outputs and gradients, less saved memory (opt-in; its CPU cost in docs/benchmarks.md). Default: False.

    Example:
        >>> import torch
        >>> from resnest_backbones.mmdet import MMDetResNeStBackbone
        >>> model = MMDetResNeStBackbone(depth=50, out_indices=(1, 3)).eval()
        >>> [tuple(f.shape) for f in model(torch.rand(1, 3, 64, 64))]
        [(1, 512, 8, 8), (1, 2048, 2, 2)]
    """

    framework_defaults: FrameworkDefaults = MMDET
    batch_of_one_advice = ("train_dataloader.batch_size >= 2 images per process; or norm_cfg=dict(type='SyncBN') "
                           "across processes; or fixed statistics (norm_eval=True, or norm_cfg=dict(type='FrozenBN')); "
                           "or norm_cfg=dict(type='GN', num_groups=32) with attention_norm_cfg=dict(type='GN', "
                           "num_groups=1)")

    def __init__(self, depth: Optional[int] = None, in_channels: int = 3, stem_channels: Optional[int] = None,
                 base_channels: int = 64, num_stages: int = 4, strides: Optional[Sequence[int]] = None,
                 dilations: Optional[Sequence[int]] = None, out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = "pytorch", frozen_stages: int = -1, conv_cfg: Optional[Dict] = None,
                 norm_cfg: Optional[Dict] = dict(type="BN", requires_grad=True), norm_eval: Optional[bool] = None,
                 dcn: Optional[Dict] = None, stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[list] = None, with_cp: bool = False, zero_init_residual: bool = True,
                 pretrained: Optional[str] = None, init_cfg=None, groups: Optional[int] = None,
                 base_width: Optional[int] = None, radix: Optional[int] = None,
                 reduction_factor: Optional[int] = None, avg_down_stride: bool = True,
                 contract_dilation: Optional[bool] = None, multi_grid: Optional[Sequence[int]] = None,
                 variant: Optional[str] = None, output_stride: Optional[int] = None,
                 dilated_layout: Optional[str] = None, attention_norm_cfg: Optional[Dict] = None,
                 avd_first: Optional[bool] = None, drop_block_prob: float = 0.0, last_gamma: bool = False,
                 fast_inference: bool = False, memory_efficient: bool = False, **unknown):
        check_argument_names(unknown, _ARGUMENTS)
        init_cfg = self._init_cfg_from(pretrained, init_cfg)
        super().__init__(**core_kwargs(
            self.framework_defaults, depth=depth, in_channels=in_channels, stem_channels=stem_channels,
            base_channels=base_channels, num_stages=num_stages, strides=strides, dilations=dilations,
            out_indices=out_indices, style=style, frozen_stages=frozen_stages, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            norm_eval=norm_eval, dcn=dcn, plugins=plugins, with_cp=with_cp, groups=groups, base_width=base_width,
            radix=radix, reduction_factor=reduction_factor, avg_down_stride=avg_down_stride,
            contract_dilation=contract_dilation, multi_grid=multi_grid, variant=variant, output_stride=output_stride,
            dilated_layout=dilated_layout, attention_norm_cfg=attention_norm_cfg, avd_first=avd_first,
            drop_block_prob=drop_block_prob, last_gamma=last_gamma))  # BaseModule.__init__ runs with init_cfg=None
        self.init_cfg = init_cfg
        self.variant = variant
        self.depth = depth
        self.out_indices = tuple(out_indices)
        self.zero_init_residual = zero_init_residual
        set_memory_efficient(self, memory_efficient)
        self._init_fast_inference(fast_inference)

    @staticmethod
    def _init_cfg_from(pretrained, init_cfg):
        """mmdet's / mmseg's handling of the deprecated ``pretrained`` (mmseg's segmentors pass it)."""
        if init_cfg and pretrained:
            raise OpenMMLabArgumentError("init_cfg and pretrained cannot be specified at the same time; use "
                                         f"init_cfg=dict(type='Pretrained', checkpoint={pretrained!r})")
        if isinstance(pretrained, str):
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use "init_cfg" instead')
            return dict(type="Pretrained", checkpoint=pretrained)
        if pretrained is not None:
            raise TypeError(f"pretrained must be a str or None, got {type(pretrained).__name__}")
        return copy.deepcopy(init_cfg)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Tuple of the ``out_indices`` stage features, shallowest first."""
        if self._runs_fused():
            return tuple(self._fused_features(x).values())
        return tuple(self.forward_features(x).values())

    def init_weights(self):
        """``init_cfg=dict(type='Pretrained', ...)`` (or ``pretrained=``) through the core's strict loader; other
        init_cfg types through mmengine. Without init_cfg the core's initialisation (at construction) stays:
        Kaiming fan-out normal convolutions and unit norms, as mmdet's default init."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [cfg for cfg in cfgs if cfg.get("type") == "Pretrained"]
        others = [cfg for cfg in cfgs if cfg.get("type") != "Pretrained"]
        if len(pretrained) > 1:
            raise ValueError(f"ResNeStBackbone got {len(pretrained)} Pretrained init_cfgs; give one")
        if others:
            initialize(self, others)
        if pretrained:
            load_init_cfg(self, pretrained[0], describe(self.depth, self.variant))
        self._is_init = True


# Every argument name the constructor takes (mmdet's / mmseg's and the project's), for the did-you-mean check.
_ARGUMENTS = tuple(name for name in inspect.signature(OpenMMLabResNeStBackbone).parameters if name != "unknown")
