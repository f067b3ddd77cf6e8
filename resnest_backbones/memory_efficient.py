"""Memory-efficient training of the ResNeSt bottleneck: exact gradients, ResNet-level saved activations.

In eager autograd every op keeps what its own backward needs. Per bottleneck of width ``C`` (split attention with
``radix`` splits) that is: ``bn1``'s input and its ReLU's output (``C`` channels each), ``bn0``'s input and its
ReLU's output (``radix * C`` each), the weighted sum (``C``, the input of ``conv3``; with ``avd`` also the input
of the pool, at full resolution), ``bn3``'s input and the block output (``4C`` each). A ResNet bottleneck keeps
``C + C + C + C + 4C + 4C``; ResNeSt-50 ends up at 1.38x ResNet-50's saved bytes.

:func:`bottleneck_core` computes the middle of the block, from ``conv1``'s output ``c1`` to ``conv3``'s output::

    relu(drop(bn1(c1))) -> [avd pool] -> conv2 -> relu(drop(bn0(.))) -> split attention -> [avd pool] -> conv3

as one autograd Function that saves only ``c1`` and the split-attention conv's output ``y`` (plus per-channel
statistics, DropBlock's keep masks as bytes, and the tiny attention branch). Backward recomputes the cheap
element-wise parts (BN as a per-channel affine with the saved batch statistics, ReLU, the weighted sum, the pools)
and runs the same backward kernels autograd would (``convolution_backward``, ``native_batch_norm_backward``,
``threshold_backward``, ``avg_pool2d_backward``); the attention MLP keeps its own small autograd graph. What a block
keeps becomes ``C + radix * C + 4C + 4C``: below ResNet's ``12C`` for radix 2.

Exactness: the forward pass computes the same function as the eager block (BN normalises with ``x * a + b``
where ``a, b`` fold the batch statistics and the affine parameters, which rounds differently from the fused
kernel in the last bit); batch statistics and running-stat updates come from ``torch.batch_norm_update_stats``, the
kernel ``nn.BatchNorm2d`` uses, with ``nn.BatchNorm2d``'s momentum rules (``momentum=None``: cumulative average,
``num_batches_tracked``). The backward recomputes with the very same ops as the forward, so ReLU masks agree bit for
bit. ``tests/test_memory_efficient.py`` checks gradients, running statistics and outputs against eager and timm.

Opt-in, and owned by this module: :func:`set_memory_efficient` (also ``create_model(..., memory_efficient=True)``,
detectron2's ``MODEL.RESNEST.MEMORY_EFFICIENT``, OpenMMLab's ``memory_efficient=``) swaps the model's stages for
:class:`MemoryEfficientStage` (the core's ``Stage`` and ``Bottleneck`` know nothing of it). It is not the default
because with glibc's default heap policy it made the CPU training step slower per process (page faults; figures in
``docs/benchmarks.md``). A swapped stage runs it for a block when it applies (:func:`applies`), otherwise its plain
eager forward:

* the block is training, autograd is recording, something in the block needs a gradient, on CPU or CUDA;
* not under TorchScript, tracing, ONNX export or ``torch.compile`` (those see the plain, standard-op forward;
  inductor decides on its own what to recompute), not inside the block-level gradient checkpointing of
  ``with_cp`` (which already keeps only the block input);
* ``bn1``/``bn0`` (``bn2`` for radix 0) are ``nn.BatchNorm2d`` (training or eval mode, e.g. ``norm_eval``),
  ``nn.SyncBatchNorm`` in eval mode, or :class:`~resnest_backbones.layers.FrozenBatchNorm2d`. GroupNorm and
  SyncBatchNorm in training mode normalise with other statistics (per group, across processes): eager;
* the convolutions are plain zero-padded ``nn.Conv2d``, the pools ``nn.AvgPool2d``, DropBlock is ours or absent.
  Autocast works: the convolutions run in the autocast dtype as in eager. On CUDA it is unmeasured
  (``tools/benchmark.py --device cuda`` times it).

Module hooks registered on the submodules between ``bn1`` and ``conv3`` do not fire on this path (their modules
are not called); leave it off for such tools.
"""
import threading
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from torch.autograd.function import once_differentiable

from .layers import DropBlock2D, FrozenBatchNorm2d, memory_format_of
from .resnest import Bottleneck, Stage

SUPPORTED_DEVICE_TYPES = ("cpu", "cuda")

_state = threading.local()


@contextmanager
def disabled():
    """Run blocks with their plain eager forward inside this context (this thread only)."""
    previous = getattr(_state, "disabled", False)
    _state.disabled = True
    try:
        yield
    finally:
        _state.disabled = previous


def set_memory_efficient(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch the formulation on or off for every bottleneck of ``model``, in place.

    On, each :class:`~resnest_backbones.resnest.Stage` becomes a :class:`MemoryEfficientStage` (the same modules and
    parameters, the same state-dict names; only the class changes); off, the core's ``Stage`` again.

    Args:
        model: a ResNeSt, one of the adapters' backbones, a detector holding one, or a single block.
        enabled: True: every training forward where the formulation applies (:func:`applies`); False: the plain
            eager forward (the default of a new model).

    Returns:
        ``model``.
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"memory_efficient must be True or False, got {enabled!r}"
                         + (" (write True or False without quotes)" if isinstance(enabled, str) else ""))
    for module in model.modules():
        if type(module) in (Stage, MemoryEfficientStage):
            module.__class__ = MemoryEfficientStage if enabled else Stage
    return model


def is_memory_efficient(model: nn.Module) -> bool:
    """Whether :func:`set_memory_efficient` switched ``model``'s bottlenecks on."""
    return any(isinstance(module, MemoryEfficientStage) for module in model.modules())


# ------------------------------------------------------------------------------------------------ applicability
def _norm_supported(norm: nn.Module, dtype: torch.dtype) -> bool:
    if type(norm) is FrozenBatchNorm2d:
        return True
    if type(norm) is nn.BatchNorm2d or (type(norm) is nn.SyncBatchNorm and not norm.training):
        # Low-precision inputs need float32 statistics, which the kernel returns only with running buffers.
        return norm.running_mean is not None or dtype in (torch.float32, torch.float64)
    return False


def _drop_supported(drop: Optional[nn.Module]) -> bool:
    return drop is None or type(drop) in (nn.Identity, DropBlock2D)


def _conv_supported(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.transposed is False)


def _pool_supported(pool: Optional[nn.Module]) -> bool:
    return pool is None or type(pool) is nn.AvgPool2d


def _parts(block: nn.Module):
    """``(norm1, drop1, pool_first, conv2, norm2, drop2, split_attention or None, pool_after, conv3)``."""
    pool = block.avd_layer
    first, after = (pool, None) if block.avd_first else (None, pool)
    if block.bn2 is None:  # split attention
        sa = block.conv2
        return block.bn1, block.drop_block1, first, sa.conv, sa.bn0, sa.drop_block, sa, after, block.conv3
    return block.bn1, block.drop_block1, first, block.conv2, block.bn2, block.drop_block2, None, after, block.conv3


def _mlp_parameters(sa: Optional[nn.Module]) -> List[torch.Tensor]:
    if sa is None:
        return []
    # _parameters directly: Module.parameters() costs more than the rest of this check (called per block and step).
    return [p for module in (sa.fc1, sa.bn1, sa.fc2)
            for p in (module._parameters.values() if not module._modules else module.parameters()) if p is not None]


def _norm_parameters(norm: nn.Module) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    if isinstance(norm, nn.modules.batchnorm._BatchNorm):
        return norm.weight, norm.bias
    return None, None  # FrozenBatchNorm2d: buffers only


def applies(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`bottleneck_core` replaces the eager middle of ``block`` for input ``x`` (checked per call)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or \
            isinstance(x, torch.fx.Proxy):
        return False  # first: under dynamo nothing below is traced
    if not block.training or not torch.is_grad_enabled() or getattr(_state, "disabled", False):
        return False
    device = x.device.type
    if device not in SUPPORTED_DEVICE_TYPES:
        return False
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    norm1, drop1, pool_first, conv2, norm2, drop2, sa, pool_after, conv3 = _parts(block)
    if not (_norm_supported(norm1, dtype) and _norm_supported(norm2, dtype) and _drop_supported(drop1)
            and _drop_supported(drop2) and _conv_supported(conv2) and _conv_supported(conv3)
            and _pool_supported(pool_first) and _pool_supported(pool_after)):
        return False
    # Without anything to differentiate the plain forward records no graph and keeps nothing.
    tensors = [x, block.conv1.weight, conv2.weight, conv3.weight, *_norm_parameters(norm1), *_norm_parameters(norm2),
               *_mlp_parameters(sa)]
    return any(t is not None and t.requires_grad for t in tensors)


# ------------------------------------------------------------------------------------------------ pieces
class _NormReLU:
    """``relu(drop_block(norm(x)))`` with the norm as a per-channel affine ``x * alpha + beta``; recomputable from
    ``x`` and the few tensors of :meth:`saved`."""

    def __init__(self, norm: nn.Module, drop: Optional[nn.Module]):
        self.norm = norm
        self.drop = drop if isinstance(drop, DropBlock2D) and drop.training and drop.drop_prob > 0 else None
        self.batch_stats = isinstance(norm, nn.modules.batchnorm._BatchNorm) and (
            norm.training or norm.running_mean is None)
        self.alpha = self.beta = self.mean = self.invstd = self.keep = self.scale = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        if isinstance(norm, FrozenBatchNorm2d):
            # FrozenBatchNorm2d's own scale and shift, computed the same way.
            self.alpha = norm.weight * (norm.running_var + norm.eps).rsqrt()
            self.beta = norm.bias - norm.running_mean * self.alpha
        else:
            if self.batch_stats:
                self.mean, var = torch.batch_norm_update_stats(x, *self._running_buffers(), self._momentum())
                # As the CPU kernel: 1/sqrt in double, so invstd, alpha, beta and the output below come out bit for
                # bit as nn.BatchNorm2d's (on builds whose kernels fuse the multiply-adds, as addcmul does).
                self.invstd = (var.double() + norm.eps).rsqrt().to(var.dtype)
                mean, invstd = self.mean, self.invstd
            else:  # eval-mode BatchNorm: the running statistics
                mean, invstd = norm.running_mean, (norm.running_var + norm.eps).rsqrt()
            self.alpha = invstd if norm.weight is None else norm.weight * invstd
            bias = torch.zeros_like(mean) if norm.bias is None else norm.bias
            self.beta = torch.addcmul(bias, mean, self.alpha, value=-1)  # a fused multiply-add, as in the kernel
        z = self._affine(x)
        if self.drop is not None:
            keep, self.scale = self.drop.sample_keep_mask(z)
            z = z * keep * self.scale  # DropBlock2D's own order of operations
            self.keep = keep.to(torch.bool)  # 0/1 exactly: a byte per element instead of four
        return z.relu_()

    def _running_buffers(self):
        norm = self.norm
        if norm.training and norm.track_running_stats:
            return norm.running_mean, norm.running_var
        return None, None

    def _momentum(self) -> float:
        """``nn.BatchNorm2d.forward``'s rule, including its ``num_batches_tracked`` update."""
        norm = self.norm
        factor = 0.0 if norm.momentum is None else norm.momentum
        if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
            norm.num_batches_tracked.add_(1)
            factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
        return factor

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        """``x * alpha + beta`` by the BatchNorm kernel itself (in eval mode with mean 0, variance 1, eps 0 its
        per-channel terms are exactly ``alpha`` and ``beta``): the very transform of the training-mode kernel, for
        any dtype mix and memory format, and ~4x faster than ``addcmul`` with broadcast channel vectors."""
        zeros = torch.zeros_like(self.alpha)
        return torch.native_batch_norm(x, self.alpha, self.beta, zeros, torch.ones_like(self.alpha), False, 0.0,
                                       0.0)[0]

    def recompute(self, x: torch.Tensor) -> torch.Tensor:
        """The forward output again, bit for bit (same ops, same inputs, same keep mask)."""
        z = self._affine(x)
        if self.keep is not None:
            z = z * self.keep.to(z.dtype) * self.scale
        return z.relu_()

    def saved(self) -> List[Optional[torch.Tensor]]:
        return [self.alpha, self.beta, self.mean, self.invstd, self.keep, self.scale]

    def restore(self, tensors: Sequence[Optional[torch.Tensor]]) -> None:
        self.alpha, self.beta, self.mean, self.invstd, self.keep, self.scale = tensors

    def backward(self, grad: torch.Tensor, out: torch.Tensor, x: torch.Tensor, mask: Sequence[bool]):
        """``(grad_x, grad_weight, grad_bias)`` from the gradient ``grad`` of the output ``out``, with the kernels
        autograd uses. Both are the caller's own dead buffers and get overwritten: ``grad`` in place, ``grad_x`` into
        ``out``'s memory (on CPU a fresh activation-sized buffer costs about as much as the pass that fills it)."""
        grad = torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)
        if self.keep is not None:
            grad.mul_(self.scale).mul_(self.keep.to(grad.dtype))  # autograd's (grad * scale) * keep
        norm = self.norm
        if isinstance(norm, FrozenBatchNorm2d):
            return (grad.mul_(self.alpha.view(1, -1, 1, 1).to(grad.dtype)) if mask[0] else None), None, None
        mask = [mask[0], mask[1] and norm.weight is not None, mask[2] and norm.bias is not None]
        if not any(mask):
            return None, None, None
        if self.batch_stats:
            args = (grad, x, norm.weight, None, None, self.mean, self.invstd, True, norm.eps)
        else:
            args = (grad, x, norm.weight, norm.running_mean, norm.running_var, None, None, False, norm.eps)
        if mask[0] and out.dtype == x.dtype and out.stride() == x.stride():
            # The kernel reduces over grad_output anyway, so the parameter gradients cost nothing extra.
            grads = torch.ops.aten.native_batch_norm_backward.out(
                *args, [True, True, True], out0=out, out1=torch.empty_like(self.alpha),
                out2=torch.empty_like(self.alpha))
        else:
            grads = torch.ops.aten.native_batch_norm_backward(*args, mask)
        return tuple(g if m else None for g, m in zip(grads, mask))


def _conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _conv_backward(conv: nn.Conv2d, grad: torch.Tensor, x: torch.Tensor, mask: Sequence[bool]):
    """``(grad_x, grad_weight, grad_bias)`` of ``_conv``. The forward ran in ``grad``'s dtype (autocast's, or the
    input's); inputs and gradients are cast as autocast cast them."""
    if not any(mask):
        return None, None, None
    weight = conv.weight
    bias_sizes = None if conv.bias is None else list(conv.bias.shape)
    mask = [mask[0], mask[1], mask[2] and conv.bias is not None]
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad, x.to(grad.dtype), weight.to(grad.dtype), bias_sizes, list(conv.stride), list(conv.padding),
        list(conv.dilation), False, [0, 0], conv.groups, mask)
    return (grad_x.to(x.dtype) if mask[0] else None, grad_w.to(weight.dtype) if mask[1] else None,
            grad_b.to(conv.bias.dtype) if mask[2] else None)


def _pool(pool: nn.AvgPool2d, x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, pool.count_include_pad,
                        pool.divisor_override)


def _pool_backward(pool: nn.AvgPool2d, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    pair = torch.nn.modules.utils._pair
    stride = pool.stride if pool.stride is not None else pool.kernel_size
    return torch.ops.aten.avg_pool2d_backward(grad, x, pair(pool.kernel_size), pair(stride), pair(pool.padding),
                                              pool.ceil_mode, pool.count_include_pad, pool.divisor_override)


def _splits(x: torch.Tensor, radix: int) -> torch.Tensor:
    """``(B, radix, C, H, W)`` view of ``(B, radix*C, H, W)`` (radix-major channels), NCHW or channels_last."""
    return x.view(x.size(0), radix, x.size(1) // radix, x.size(2), x.size(3))


def _weighted_sum(r: torch.Tensor, attention: torch.Tensor, scratch: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``sum_k r_k * a_k``, rounded as the eager ``(splits * attention).sum(1)`` (each product rounded, then added in
    order: a fused multiply-add would round differently), with one split-sized buffer for the products (``scratch``
    if it has the products' dtype)."""
    splits = _splits(r, attention.size(1))
    # Into a buffer in r's layout: a product of split views gets strides that, for a batch of one, later ops do not
    # recognise as channels_last.
    out = torch.mul(splits[:, 0], attention[:, 0], out=torch.empty(
        splits[:, 0].shape, dtype=torch.result_type(r, attention), device=r.device, memory_format=memory_format_of(r)))
    if attention.size(1) > 1:
        product = scratch if scratch is not None and scratch.dtype == out.dtype else torch.empty_like(out)
        for index in range(1, attention.size(1)):
            out.add_(torch.mul(splits[:, index], attention[:, index], out=product))
    return out


# ------------------------------------------------------------------------------------------------ the Function
class _BottleneckCore(torch.autograd.Function):
    """``c1 -> conv3 output`` of a bottleneck (see the module docstring); the tensors after ``parts`` are passed only
    so that autograd hands them their gradients."""

    @staticmethod
    def forward(ctx, parts, c1: torch.Tensor, *parameters: Optional[torch.Tensor]) -> torch.Tensor:
        norm1, drop1, pool_first, conv2, norm2, drop2, sa, pool_after, conv3 = parts
        act1, act2 = _NormReLU(norm1, drop1), _NormReLU(norm2, drop2)
        h = act1.forward(c1)
        if pool_first is not None:
            h = _pool(pool_first, h)
        y = _conv(conv2, h)
        r = act2.forward(y)
        gap = attention = None
        if sa is not None:
            splits = _splits(r, sa.radix)
            # h is dead: its buffer takes the split sum (NCHW: where the eager sum would put it, so the mean below
            # rounds the same), then the products of the weighted sum.
            spare = h if h.shape == splits[:, 0].shape and h.dtype == r.dtype else None
            del h
            # As the eager block computes it (the attention MLP's BN over a few 1x1 maps amplifies rounding).
            if sa.radix > 1:
                in_place = spare is not None and r.is_contiguous() and spare.is_contiguous()
                split_sum = torch.sum(splits, 1, out=spare) if in_place else splits.sum(1)
                gap = split_sum.mean((2, 3), keepdim=True)
                spare = split_sum if spare is None else spare
            else:
                gap = r.mean((2, 3), keepdim=True)
            with torch.enable_grad():
                # The attention MLP (1x1 maps, negligible memory) keeps an ordinary autograd graph from a leaf.
                gap.requires_grad_(True)
                attention = sa.attention(gap)
            out = _weighted_sum(r, attention.detach(), spare)
        else:
            del h
            out = r
        del r
        ctx.out_shape = out.shape  # the avd pool's input, for its backward (which reads only its shape)
        conv3_in = _pool(pool_after, out) if pool_after is not None else out
        del out
        c3 = _conv(conv3, conv3_in)
        ctx.parts, ctx.acts = parts, (act1, act2)
        ctx.gap, ctx.attention = gap, attention
        # Through save_for_backward (not ctx attributes) so that saved-tensor hooks see and count them. conv3's input
        # (C channels) is kept as eager keeps it: recomputing the weighted sum and the pool cost ~1.5% of the step.
        ctx.save_for_backward(c1, y, conv3_in, *act1.saved(), *act2.saved())
        return c3

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c3: torch.Tensor):
        norm1, drop1, pool_first, conv2, norm2, drop2, sa, pool_after, conv3 = ctx.parts
        act1, act2 = ctx.acts
        c1, y, conv3_in, *stats = ctx.saved_tensors
        act1.restore(stats[:6])
        act2.restore(stats[6:])
        needs = ctx.needs_input_grad
        # needs: [parts, c1, norm1 w, norm1 b, conv2 w, conv2 b, norm2 w, norm2 b, conv3 w, conv3 b, *mlp]
        need_h = any(needs[1:4])  # anything before conv2
        need_y = need_h or any(needs[4:8]) or any(needs[10:])

        grad_out, grad_w3, grad_b3 = _conv_backward(conv3, grad_c3, conv3_in, (need_y, needs[8], needs[9]))
        if pool_after is not None and grad_out is not None:
            grad_out = _pool_backward(pool_after, grad_out, torch.empty(
                ctx.out_shape, dtype=conv3_in.dtype, device=conv3_in.device, memory_format=memory_format_of(y)))
        del conv3_in
        grad_mlp: List[Optional[torch.Tensor]] = []
        grad_y = grad_w_n2 = grad_b_n2 = grad_w2 = grad_b2 = grad_c1 = grad_w_n1 = grad_b_n1 = None
        if need_y:
            r = act2.recompute(y)
            if sa is not None:
                attention = ctx.attention.detach()
                # As autograd differentiates the eager (splits * attention).sum(1) and the mean of the split sum;
                # grad_r's buffer first holds the products for the attention gradient.
                grad_r = torch.empty_like(r)
                grad_splits = _splits(grad_r, sa.radix)
                if torch.result_type(grad_out, r) == r.dtype:
                    products = torch.mul(grad_out.unsqueeze(1), _splits(r, sa.radix), out=grad_splits)
                else:  # autocast with float attention: the products stay float, as autograd keeps them
                    products = grad_out.unsqueeze(1) * _splits(r, sa.radix)
                grad_attention = products.sum((3, 4), keepdim=True)
                del products
                params = _mlp_parameters(sa)
                wanted = [p for p, need in zip(params, needs[10:]) if need]
                grads = torch.autograd.grad(ctx.attention, [ctx.gap] + wanted,
                                            grad_attention.to(ctx.attention.dtype), retain_graph=True)
                grad_gap, found = grads[0], iter(grads[1:])
                grad_mlp = [next(found) if need else None for need in needs[10:]]
                # d out / d r_k = a_k, d gap / d r_k = 1 / (H * W).
                torch.mul(grad_out.unsqueeze(1), attention, out=grad_splits)
                grad_splits.add_((grad_gap / (r.size(2) * r.size(3))).unsqueeze(1))
            else:
                grad_r = grad_out
            del grad_out
            grad_y, grad_w_n2, grad_b_n2 = act2.backward(grad_r, r, y, (True, needs[6], needs[7]))
            del grad_r, r
            h = act1.recompute(c1)
            conv2_in = _pool(pool_first, h) if pool_first is not None else h
            grad_h, grad_w2, grad_b2 = _conv_backward(conv2, grad_y, conv2_in, (need_h, needs[4], needs[5]))
            del conv2_in, grad_y
            if need_h:
                if pool_first is not None:
                    grad_h = _pool_backward(pool_first, grad_h, h)
                grad_c1, grad_w_n1, grad_b_n1 = act1.backward(grad_h, h, c1, needs[1:4])
        return (None, grad_c1, grad_w_n1, grad_b_n1, grad_w2, grad_b2, grad_w_n2, grad_b_n2, grad_w3, grad_b3,
                *grad_mlp)


def bottleneck_core(block: nn.Module, c1: torch.Tensor) -> torch.Tensor:
    """``conv3``'s output from ``conv1``'s output ``c1`` (pre-``bn1``) in ``block``, saving only ``c1`` and the
    split-attention conv's output for backward. Call only where :func:`applies`."""
    parts = _parts(block)
    norm1, _, _, conv2, norm2, _, sa, _, conv3 = parts
    return _BottleneckCore.apply(parts, c1, *_norm_parameters(norm1), conv2.weight, conv2.bias,
                                 *_norm_parameters(norm2), conv3.weight, conv3.bias, *_mlp_parameters(sa))


# ------------------------------------------------------------------------------------------------ the swapped stage
class MemoryEfficientStage(Stage):
    """A :class:`~resnest_backbones.resnest.Stage` that runs each block's ``bn1 .. conv3`` as :func:`bottleneck_core`
    where :func:`applies` (the same function, less saved memory), and the block's own forward elsewhere. Made by
    :func:`set_memory_efficient` from an existing stage (its class is swapped, nothing else: the blocks stay the
    core's ``Bottleneck``). Under gradient checkpointing (``with_cp``) the blocks run their plain forward: it keeps
    only each block's input anyway, so the formulation would only add work there. On its path the block's and its
    submodules' forward hooks do not fire."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            return self._forward_in_python(x)
        for block in self:  # TorchScript: the plain blocks
            x = block(x)
        return x

    @torch.jit.unused
    def _forward_in_python(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and self.training and self._input_needs_grad(x):
            return self._forward_checkpointed(x)
        for block in self:
            if isinstance(block, Bottleneck) and applies(block, x):
                x = self._forward_memory_efficient(block, x)
            else:
                x = block(x)
        return x

    @torch.jit.unused
    def _forward_memory_efficient(self, block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
        """The block's forward with ``bn1 .. conv3`` as :func:`bottleneck_core`."""
        shortcut = x if block.downsample is None else block.downsample(x)
        out = block.drop_block3(block.bn3(bottleneck_core(block, block.conv1(x))))
        out += shortcut
        return block.relu(out)

    @torch.jit.unused
    def _forward_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = torch.utils.checkpoint.checkpoint(_plain_call, block, x, use_reentrant=False)
        return x


def _plain_call(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # Inside the checkpointed function, so the recomputation in backward runs the plain forward too.
    with disabled():
        return block(x)
