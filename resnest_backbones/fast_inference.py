"""Fast inference: fold every BatchNorm into its convolution and run split attention with fewer passes.

``to_fast_inference(model)`` rewrites a :class:`~resnest_backbones.resnest.ResNeSt` in place, and the model's class
becomes a subclass of its own (``FastInference<Class>``: eval-only, features returned in the caller's layout); the
core knows nothing of it. The adapters' backbones take ``fast_inference=True`` (OpenMMLab) /
``MODEL.RESNEST.FAST_INFERENCE`` (detectron2) through :class:`FastInferenceOption`: in eval mode they run a fused
copy of themselves. What the rewrite does:

* every BatchNorm / SyncBatchNorm / FrozenBatchNorm2d that directly follows a convolution is folded into that
  convolution's weight and bias (stem, ``conv1``/``bn1``, split attention ``conv``/``bn0`` and ``fc1``/``bn1``,
  ``conv3``/``bn3``, shortcut ``conv``/``norm``); GroupNorm depends on the batch statistics of each input, so it is
  kept as it is;
* DropBlock modules, which are identities in eval mode, are removed;
* on CPU in fp32 inference (no autograd, not tracing or compiling), each conv followed by ReLU, and ``conv3`` with
  the residual add and ReLU, run as one oneDNN call with fused post-ops (the kernels ``torch.compile`` itself uses
  on CPU), which saves a full read and write of the activation per fusion; elsewhere (autograd, TorchScript/ONNX
  tracing, ``torch.compile``, CUDA, other dtypes) the same modules run as plain ``conv`` + ``relu``;
* there, the stem and the stages also compute in channels_last, oneDNN's native layout, whatever the input's layout
  (an NCHW tensor would be reordered around every convolution): the stem converts the input once, the stages pass
  channels_last on to each other, and the fused model's ``forward_features`` returns each feature in the input's
  layout (one copy per returned feature; none for the classifier's logits);
* split attention pools the concatenated splits once and lets ``fc1``, its weight tiled once per split, sum the
  pooled vectors (instead of materialising the sum of full-size splits), gets its attention radix-major straight
  from ``fc2`` (its output channels are permuted once here, so no transpose at run time), and forms the weighted sum
  over channel slices with one multiply and ``radix - 1`` in-place multiply-adds instead of a ``radix``-times larger
  product followed by a reduction. Every shape it uses is a module constant, so an exported graph (ONNX, TorchScript
  tracing) has static Reshapes and Slices and no shape arithmetic.

The result computes the same function as the eval-mode model up to float rounding (checked in
``tests/test_fast_inference.py``). It has no BatchNorm left to train, so it is eval-only: fusing a model in training
mode raises, and so does switching a fused model back to training.
"""
import copy
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropBlock2D, FrozenBatchNorm2d, memory_format_of
from .resnest import Bottleneck, ResNeSt
from .split_attention import SplitAttention
from .validation import check_boolean

_FOLDABLE_NORMS = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)
# oneDNN convolution with fused post-ops (what inductor's CPU backend emits); absent from builds without mkldnn.
_ONEDNN_POINTWISE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class FastInferenceError(RuntimeError):
    """Raised when a model is fused in training mode or a fused model is put back into training mode."""


def _norm_scale_shift(norm: nn.Module):
    """Per-channel ``(scale, shift)`` with ``norm(x) == x * scale + shift`` in eval mode, or None if not foldable."""
    if not isinstance(norm, _FOLDABLE_NORMS):
        return None
    if isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.running_mean is None:
        return None  # track_running_stats=False normalises with batch statistics even in eval mode
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    # Fold in float64 so the folded weights round once, not twice.
    scale = weight.double() * (norm.running_var.double() + norm.eps).rsqrt()
    shift = bias.double() - norm.running_mean.double() * scale
    return scale, shift


def fold_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> nn.Module:
    """Return one module computing ``norm(conv(x))`` in eval mode.

    A BatchNorm-like ``norm`` is folded into a copy of ``conv`` (with a bias); any other norm (GroupNorm, a custom
    callable) is kept after the conv in an ``nn.Sequential``.
    """
    folded = _norm_scale_shift(norm)
    if folded is None:
        return nn.Sequential(conv, norm)
    scale, shift = folded
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused = fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
        bias = shift if conv.bias is None else conv.bias.double() * scale + shift
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
    return fused


def _fuse_sequential(modules: List[nn.Module]) -> nn.Module:
    """Fold every (conv, norm) pair of ``modules``, drop identities and DropBlocks; return a module (or Identity)."""
    out: List[nn.Module] = []
    index = 0
    while index < len(modules):
        module = modules[index]
        following = modules[index + 1] if index + 1 < len(modules) else None
        if isinstance(module, nn.Conv2d) and following is not None and isinstance(following, _FOLDABLE_NORMS):
            out.append(fold_conv_norm(module, following))
            index += 2
            continue
        if not isinstance(module, (nn.Identity, DropBlock2D)):
            out.append(module)
        index += 1
    if not out:
        return nn.Identity()
    return out[0] if len(out) == 1 else nn.Sequential(*out)


def _flatten(module: Optional[nn.Module]) -> List[nn.Module]:
    if module is None:
        return []
    return list(module) if isinstance(module, nn.Sequential) else [module]


def _plain_eager(x) -> bool:
    """Not compiling (inductor fuses on its own and must see standard ops), scripting, tracing or ``torch.fx``
    tracing (exports must stay portable)."""
    return not (torch.compiler.is_compiling() or torch.jit.is_scripting() or torch.jit.is_tracing()
                or isinstance(x, torch.fx.Proxy))


def _onednn_applies(x: torch.Tensor, conv: nn.Module) -> bool:
    """Whether the fused oneDNN kernel can replace ``conv`` + pointwise ops here (checked per call, cheaply).

    Only in plain eager runs (:func:`_plain_eager`), not while recording autograd (the fused kernels have no
    backward); only fp32 CPU tensors and plain zero-padded ``nn.Conv2d`` modules.
    """
    if not _plain_eager(x):
        return False
    return (_ONEDNN_POINTWISE and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str))


def _channels_last_applies(x: torch.Tensor) -> bool:
    """Whether a fused stem/stage runs in channels_last whatever the input's layout: where oneDNN runs it (see
    :func:`_onednn_applies`), NHWC is its native layout, and an NCHW tensor is reordered on entry and exit of every
    convolution (measured: the fused model in NCHW 1.2x slower than in channels_last, both with NCHW input)."""
    if not _plain_eager(x):
        return False
    return (_ONEDNN_POINTWISE and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and x.dim() == 4)


def conv_only(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` through oneDNN where :func:`_onednn_applies` (elsewhere PyTorch may pick its im2col/GEMM kernel,
    measured 2x slower for the 1x1 shortcut convs with one thread)."""
    if _onednn_applies(x, conv):
        return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, list(conv.padding),
                                                       list(conv.stride), list(conv.dilation), conv.groups,
                                                       "none", [], "")
    return conv(x)


def conv_relu(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x))``, as one oneDNN call where :func:`_onednn_applies`."""
    if _onednn_applies(x, conv):
        return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, list(conv.padding),
                                                       list(conv.stride), list(conv.dilation), conv.groups,
                                                       "relu", [], "")
    return F.relu(conv(x), inplace=True)


def conv_add_relu(conv: nn.Module, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x) + other)`` (the end of a residual block), as one oneDNN call where :func:`_onednn_applies`."""
    if _onednn_applies(x, conv) and other.dtype == x.dtype:
        return torch.ops.mkldnn._convolution_pointwise.binary(x, other, conv.weight, conv.bias, list(conv.padding),
                                                              list(conv.stride), list(conv.dilation), conv.groups,
                                                              "add", 1.0, "relu", [], "")
    # conv's output is a fresh tensor that nothing else holds: adding in place saves one allocation.
    return F.relu(conv(x).add_(other), inplace=True)


class FusedStem(nn.Module):
    """The (deep) stem after folding: ``relu(conv)`` for each conv of the stem, including the last one (whose ReLU
    is ``ResNeSt.relu``, replaced by an identity by :func:`to_fast_inference`), then the stem's max pool (moved
    here from ``ResNeSt.maxpool``).

    Where oneDNN runs it, it converts the input to channels_last and returns channels_last (the stages take it from
    there; ``ResNeSt.forward_features`` gives the caller back its layout)."""

    def __init__(self, units: List[nn.Module], pool: Optional[nn.Module] = None):
        super().__init__()
        self.units = nn.ModuleList(units)
        self.pool = pool if pool is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = _channels_last_applies(x)
        out = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        for unit in self.units:
            out = conv_relu(unit, out)
        return self.pool(out)


class FusedStage(nn.Sequential):
    """The fused blocks of one stage. Where oneDNN runs them, they compute in channels_last and return it (their
    input is already channels_last, from the fused stem or the previous stage, unless the stage is called alone)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.contiguous(memory_format=torch.channels_last) if _channels_last_applies(x) else x
        for block in self:
            out = block(out)
        return out


class _EvalOnly(nn.Module):
    """Base of the fused modules: their BatchNorms are gone, so training them would silently train another model."""

    def train(self, mode: bool = True):
        if mode:
            raise FastInferenceError(f"{type(self).__name__} is an inference-only fused module (its BatchNorms are "
                                   "folded into the convolutions); train the original model instead")
        return super().train(False)


class FusedSplitAttention(_EvalOnly):
    """Inference form of :class:`SplitAttention` built by :func:`to_fast_inference` (same result, fewer passes).

    Args:
        split_attention (SplitAttention): the eval-mode module to fuse; it is not modified.
    """

    def __init__(self, split_attention: SplitAttention):
        super().__init__()
        sa = split_attention
        self.radix = sa.radix
        self.out_channels = sa.out_channels
        self.conv = fold_conv_norm(sa.conv, sa.bn0)
        self.attention = nn.Sequential(_fc1_over_all_splits(sa), nn.ReLU(inplace=True), _fc2_radix_major(sa))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv_relu(self.conv, x)
        attention = self.attention(F.adaptive_avg_pool2d(x, 1))
        if self.radix == 1:
            return x * torch.sigmoid(attention)
        # Shapes from the module's constants only (-1 for the batch): an exported graph has static Reshapes and
        # Slices, no Shape / Gather / Split driven by the tensor's sizes.
        radix, channels = self.radix, self.out_channels
        attention = F.softmax(attention.view(-1, radix, channels), dim=1).view(-1, radix * channels, 1, 1)
        if torch.is_grad_enabled() or not _plain_eager(x):  # out= has no autograd; traces and compile stay plain
            out = x[:, :channels] * attention[:, :channels]
            for index in range(1, radix):
                split = slice(index * channels, (index + 1) * channels)
                out = out + x[:, split] * attention[:, split]
            return out
        # Into a buffer in x's layout: a product of split views gets strides that, for a batch of one, the next ops
        # (the avd pool) do not recognise as channels_last, and they would copy it to NCHW.
        out = torch.mul(x[:, :channels], attention[:, :channels], out=torch.empty(
            x.size(0), channels, x.size(2), x.size(3), dtype=x.dtype, device=x.device,
            memory_format=memory_format_of(x)))
        for index in range(1, radix):
            split = slice(index * channels, (index + 1) * channels)
            out.addcmul_(x[:, split], attention[:, split])
        return out


def _fc1_over_all_splits(sa: SplitAttention) -> nn.Module:
    """``fc1`` (with ``bn1`` folded) as a dense 1x1 conv over the pooled concatenation of the splits: its weight is
    tiled once per split, so it sums them (the attention's input is the pooled sum of the splits). A norm that does
    not fold (GroupNorm) stays after it."""
    fc1 = fold_conv_norm(sa.fc1, sa.bn1)
    conv, rest = (fc1[0], list(fc1)[1:]) if isinstance(fc1, nn.Sequential) else (fc1, [])
    dense = _grouped_to_dense(conv)
    tiled = nn.Conv2d(conv.in_channels * sa.radix, conv.out_channels, 1).to(dense)
    with torch.no_grad():
        tiled.weight.copy_(dense.repeat(1, sa.radix, 1, 1))
        tiled.bias.copy_(conv.bias)
    return nn.Sequential(tiled, *rest) if rest else tiled


def _fc2_radix_major(sa: SplitAttention) -> nn.Conv2d:
    """``fc2`` with its output channels permuted once from ``[cardinality, radix, C/cardinality]`` (a grouped conv's
    order) to radix-major ``[radix, cardinality, C/cardinality]``, the splits' order: no transpose at run time. A
    grouped conv's outputs can only be permuted within a group, so this is a dense (block-diagonal) copy."""
    fc2 = sa.fc2
    order = torch.arange(fc2.out_channels).view(fc2.groups, sa.radix, -1).transpose(0, 1).reshape(-1)
    dense = _grouped_to_dense(fc2)
    permuted = nn.Conv2d(fc2.in_channels, fc2.out_channels, 1).to(dense)
    with torch.no_grad():
        permuted.weight.copy_(dense[order])
        permuted.bias.copy_(fc2.bias[order])
    return permuted


def _grouped_to_dense(conv: nn.Conv2d) -> torch.Tensor:
    """Weight of the dense conv equal to grouped 1x1 ``conv`` (zeros off the block diagonal)."""
    out_per_group = conv.out_channels // conv.groups
    in_per_group = conv.in_channels // conv.groups
    dense = conv.weight.new_zeros(conv.out_channels, conv.in_channels, *conv.kernel_size)
    for group in range(conv.groups):
        rows = slice(group * out_per_group, (group + 1) * out_per_group)
        cols = slice(group * in_per_group, (group + 1) * in_per_group)
        dense[rows, cols] = conv.weight.detach()[rows]
    return dense


class _ConvReLU(nn.Module):
    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_relu(self.conv, x)


class FusedBottleneck(_EvalOnly):
    """Inference form of :class:`Bottleneck` built by :func:`to_fast_inference`.

    Args:
        block (Bottleneck): the eval-mode block to fuse; it is not modified.
    """

    def __init__(self, block: Bottleneck):
        super().__init__()
        self.conv1 = fold_conv_norm(block.conv1, block.bn1)
        self.avd_layer = block.avd_layer
        self.avd_first = block.avd_first
        if isinstance(block.conv2, SplitAttention):
            self.conv2 = FusedSplitAttention(block.conv2)
        else:  # radix 0: plain conv, norm, ReLU
            self.conv2 = _ConvReLU(fold_conv_norm(block.conv2, block.bn2))
        self.conv3 = fold_conv_norm(block.conv3, block.bn3)
        self.downsample = _fuse_sequential(_flatten(block.downsample)) if block.downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        for module in _flatten(self.downsample):  # (pool,) conv with the folded norm
            shortcut = conv_only(module, shortcut) if isinstance(module, nn.Conv2d) else module(shortcut)
        out = conv_relu(self.conv1, x)
        if self.avd_layer is not None and self.avd_first:
            out = self.avd_layer(out)
        out = self.conv2(out)
        if self.avd_layer is not None and not self.avd_first:
            out = self.avd_layer(out)
        return conv_add_relu(self.conv3, out, shortcut)


def to_fast_inference(model: nn.Module) -> nn.Module:
    """Fold the norms of ``model`` into its convolutions for inference; returns the same (modified) model.

    Works on a :class:`ResNeSt` (stem, every stage; the classification head is kept; its class becomes
    ``FastInference<Class>``, a subclass) or on a single :class:`Bottleneck` / :class:`SplitAttention` (a new fused
    module is returned for those).

    Args:
        model: an eval-mode ResNeSt, Bottleneck or SplitAttention (call ``model.eval()`` first).

    Returns:
        The fused model: same outputs up to float rounding, no BatchNorm, inference only.

    Raises:
        FastInferenceError: if ``model`` or any of its submodules is in training mode (folding would freeze batch
            statistics that training updates, and drop DropBlock, which is active only in training), or if it is
            already fused.
        TypeError: for a model that is not a ResNeSt, Bottleneck or SplitAttention.

    Example:
        >>> model = to_fast_inference(create_model("resnest50").eval())
        >>> features = model.forward_features(torch.rand(1, 3, 224, 224))
    """
    if is_fast_inference(model):
        raise FastInferenceError(f"This {type(model).__name__} is already fused for inference (to_fast_inference "
                                 "was applied to it); use it as it is. It was left unchanged.")
    training = [name or "<model>" for name, module in model.named_modules() if module.training]
    if training:
        raise FastInferenceError(f"to_fast_inference needs an eval-mode model (call model.eval() first); in "
                                 f"training mode: {', '.join(training[:5])}{' ...' if len(training) > 5 else ''}")
    if isinstance(model, SplitAttention):
        return FusedSplitAttention(model).eval()
    if isinstance(model, Bottleneck):
        return FusedBottleneck(model).eval()
    if not isinstance(model, ResNeSt):
        raise TypeError(f"to_fast_inference expects a ResNeSt, Bottleneck or SplitAttention, got {type(model)}")
    model.conv1 = _fused_stem(model)
    model.bn1 = nn.Identity()
    model.relu = nn.Identity()
    model.maxpool = nn.Identity()
    for name in model.layer_names:
        setattr(model, name, FusedStage(*[FusedBottleneck(block) for block in getattr(model, name)]).eval())
    if isinstance(model, FastInferenceOption):
        model.fast_inference = False  # the model is its own fused form now
    model.__class__ = _fast_inference_class(type(model))
    return model.eval()


def _fused_stem(model: ResNeSt) -> "FusedStem":
    """The stem (``conv1``, ``bn1``, ``relu``, ``maxpool``) folded and grouped into (conv or conv + GroupNorm) units,
    each followed by a ReLU (the last one is ``model.relu``)."""
    stem = _fuse_sequential(_flatten(model.conv1) + [model.bn1])
    units, unit = [], []
    for module in _flatten(stem):
        if isinstance(module, nn.ReLU):
            units.append(unit[0] if len(unit) == 1 else nn.Sequential(*unit))
            unit = []
        else:
            unit.append(module)
    units.append(unit[0] if len(unit) == 1 else nn.Sequential(*unit))
    return FusedStem(units, model.maxpool)


def is_fast_inference(model: nn.Module) -> bool:
    """Whether ``model`` is the result of :func:`to_fast_inference` (a fused ResNeSt or a fused module)."""
    return isinstance(model, (FastInferenceModel, _EvalOnly))


class FastInferenceModel:
    """What a ResNeSt becomes through :func:`to_fast_inference` (mixed into a subclass of its own class): inference
    only, and ``forward_features`` gives the features back in the caller's memory layout (its fused stages compute
    in channels_last)."""

    def train(self, mode: bool = True):
        if mode:
            # Refused before nn.Module.train switches this module and then its children one by one: a refusal from
            # a fused child would leave the model half in training mode.
            raise FastInferenceError(f"This {type(self).__name__} went through to_fast_inference (its BatchNorms "
                                     "are folded into the convolutions), so it is inference-only; train the "
                                     "original model instead. It stays in eval mode.")
        return super().train(False)

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = self._forward_stages(x)[0]
        if not torch.jit.is_scripting() and _plain_eager(x):
            features = _in_layout_of(x, features)
        return features


@torch.jit.unused
def _in_layout_of(x: torch.Tensor, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    memory_format = memory_format_of(x)
    return {name: feature.contiguous(memory_format=memory_format) for name, feature in features.items()}


_FAST_INFERENCE_CLASSES: Dict[type, type] = {}


def _fast_inference_class(cls: type) -> type:
    """``FastInference<cls>``: :class:`FastInferenceModel` mixed into ``cls`` (made once per class)."""
    if cls not in _FAST_INFERENCE_CLASSES:
        _FAST_INFERENCE_CLASSES[cls] = type(f"FastInference{cls.__name__}", (FastInferenceModel, cls),
                                            {"__module__": cls.__module__})
    return _FAST_INFERENCE_CLASSES[cls]


class FastInferenceOption:
    """Mixin of the adapters' backbones (detectron2 ``MODEL.RESNEST.FAST_INFERENCE``, OpenMMLab
    ``fast_inference=True``): with ``fast_inference`` set, an eval-mode forward runs a fused copy of the backbone
    (:func:`to_fast_inference`), made at the first such forward and dropped when the weights may change (``train()``,
    ``load_state_dict``, ``.to()`` and the like). The copy is kept outside the module tree: it is in neither
    ``state_dict()`` nor ``parameters()``, so checkpoints are the plain model's."""

    def _init_fast_inference(self, enabled: bool) -> None:
        """Call at the end of the backbone's ``__init__``."""
        check_boolean("fast_inference", enabled)
        self.fast_inference = enabled
        self._drop_fused()
        self.register_load_state_dict_post_hook(_drop_fused_after_load)

    def _runs_fused(self) -> bool:
        return self.fast_inference and not self.training and not torch.jit.is_scripting()

    @torch.jit.unused
    def _fused_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self._fused is None:
            plain = copy.deepcopy(self)
            plain.fast_inference = False
            # Inference only (no gradient reaches the registered weights through it); tracing (ONNX export) takes
            # its tensors as constants, which it refuses for tensors that require grad.
            object.__setattr__(self, "_fused", to_fast_inference(plain).requires_grad_(False))
        return self._fused.forward_features(x)

    def _drop_fused(self) -> None:
        object.__setattr__(self, "_fused", None)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .cuda() / .half() do not reach the unregistered copy on their own: convert it the same way. (Not
        # dropping it keeps exports working: mmdeploy calls .cpu() right before tracing, and a copy rebuilt inside
        # the trace would record the initialisation of its new convolutions.)
        if self._fused is not None:
            self._fused._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        if mode:
            self._drop_fused()  # training changes the weights the fused copy was folded from
        return super().train(mode)


def _drop_fused_after_load(module: FastInferenceOption, incompatible_keys) -> None:
    module._drop_fused()  # the fused copy was folded from the weights just replaced
