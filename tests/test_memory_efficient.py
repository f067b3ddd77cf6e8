"""The memory-efficient training formulation (resnest_backbones/memory_efficient.py) against the plain eager block.

Each case trains one step twice from the same weights, input and random seed: once with the formulation (switched
on: it is opt-in) and once with ``memory_efficient = False``, and compares the outputs, the input gradient, the gradient
of every parameter and every buffer (running statistics, ``num_batches_tracked``). The exactness cases run in float64,
where any mistake in the formulation shows as an O(1) error and float rounding stays below 1e-10 even where a
train-mode BatchNorm over a few values amplifies it (in float32 the same tiny models amplify last-bit differences to
~1e-2, which would hide nothing and prove nothing). A float32 case at a well-conditioned size checks the default
dtype, and ``tests/test_training_grads.py`` compares this path with timm.
"""
import copy

import pytest
import torch
import torchvision
from torch import nn

import resnest_backbones as rb
from resnest_backbones import memory_efficient
from resnest_backbones.layers import FrozenBatchNorm2d


def uses_memory_efficient(tensors) -> int:
    """Number of memory-efficient block nodes in the autograd graph behind ``tensors``."""
    seen, stack, count = set(), [t.grad_fn for t in tensors if t.grad_fn is not None], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count += type(node).__name__ == "_BottleneckCoreBackward"
        stack.extend(next_node for next_node, _ in node.next_functions)
    return count


def randomize(model: nn.Module) -> nn.Module:
    """Random affine parameters and statistics for every BatchNorm and FrozenBatchNorm2d (where they exist)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)):
                n = module.num_features
                for name, low in (("weight", 0.5), ("bias", -0.5), ("running_mean", -0.5), ("running_var", 0.5)):
                    if getattr(module, name, None) is not None:
                        getattr(module, name).copy_(torch.rand(n, generator=generator) + low)
    return model


def train_step(model: nn.Module, x: torch.Tensor, seed: int = 0, backward_twice: bool = False):
    """One training step: ``(outputs, input grad, number of memory-efficient nodes)``; parameter grads in .grad."""
    torch.manual_seed(seed)  # DropBlock draws the same masks in both runs
    x = x.clone().requires_grad_(True)
    outputs = list(model.forward_features(x).values())
    generator = torch.Generator().manual_seed(1)
    loss = sum((f * torch.randn(f.shape, generator=generator, dtype=f.dtype)).sum() for f in outputs)
    loss.backward(retain_graph=backward_twice)
    if backward_twice:  # a second backward through the same graph accumulates the same gradients again
        loss.backward()
    return outputs, x.grad, uses_memory_efficient(outputs)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / a.double().abs().max().clamp(min=1e-30)).item()


def compare_with_eager(model: nn.Module, x: torch.Tensor, tolerance: float, expect_nodes: bool = True, **step):
    model.train()
    eager = copy.deepcopy(model)
    memory_efficient.set_memory_efficient(eager, False)
    memory_efficient.set_memory_efficient(model, True)
    out_me, grad_me, nodes = train_step(model, x, **step)
    out_eager, grad_eager, eager_nodes = train_step(eager, x, **step)
    assert eager_nodes == 0
    assert (nodes > 0) == expect_nodes, nodes
    for got, expected in zip(out_me, out_eager):
        assert rel(expected, got) <= tolerance
    assert rel(grad_eager, grad_me) <= tolerance
    params = dict(model.named_parameters())
    compared = 0
    for name, parameter in eager.named_parameters():
        if parameter.grad is None:
            assert params[name].grad is None, name
            continue
        # fc1's bias feeds a train-mode BN that subtracts the batch mean: its gradient is zero up to rounding.
        scale = parameter.grad.double().abs().max() if not name.endswith("fc1.bias") else 1.0
        error = ((parameter.grad.double() - params[name].grad.double()).abs().max() / max(scale, 1e-30)).item()
        assert error <= tolerance, (name, error)
        compared += 1
    assert compared > 0
    buffers = dict(model.named_buffers())
    for name, buffer in eager.named_buffers():
        if buffer.dtype == torch.long:  # num_batches_tracked
            assert torch.equal(buffers[name], buffer), name
        else:
            assert rel(buffer, buffers[name]) <= tolerance, name
    return nodes


CASES = {
    "radix2": dict(),
    "radix1": dict(radix=1),
    "radix4_cardinality2_avd_first": dict(radix=4, cardinality=2, base_width=40, avd_first=True),
    "radix0_resnet_d": dict(radix=0),
    "dilated_os8": dict(layers=[1, 1, 2, 1], output_stride=8),
    "dilated_os16_mmseg_layout": dict(output_stride=16, dilated_layout="mmseg"),
    "dropblock": dict(layers=[1, 1, 2, 1], drop_block_prob=0.3),
    "norm_eval": dict(norm_eval=True),
    "frozen_bn": dict(norm_layer="FrozenBN"),
    "momentum_none": dict(norm_layer=lambda c: nn.BatchNorm2d(c, momentum=None)),
    "no_running_stats": dict(norm_layer=lambda c: nn.BatchNorm2d(c, track_running_stats=False)),
    "no_affine": dict(norm_layer=lambda c: nn.BatchNorm2d(c, affine=False)),
    "frozen_stages_1": dict(frozen_stages=1),
    "syncbn_norm_eval": dict(norm_layer="SyncBN", norm_eval=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_and_statistics_equal_eager_float64(case):
    kwargs = dict(layers=[1, 1, 1, 1])
    kwargs.update(CASES[case])
    torch.manual_seed(0)
    model = randomize(rb.ResNeSt(**kwargs)).double()
    compare_with_eager(model, torch.randn(2, 3, 32, 32, dtype=torch.float64), 1e-10)


def test_channels_last_and_second_backward_float64():
    torch.manual_seed(0)
    model = randomize(rb.ResNeSt([1, 1, 1, 1])).double().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    compare_with_eager(model, x, 1e-10, backward_twice=True)


def test_float32_equals_eager():
    torch.manual_seed(0)
    model = randomize(rb.create_model("resnest14"))
    compare_with_eager(model, torch.randn(4, 3, 128, 128), 1e-4)


@pytest.mark.parametrize("case", ["group_norm", "with_cp"])
def test_falls_back_to_eager_where_not_exact_or_not_useful(case):
    # GroupNorm normalises per sample and group (not a per-channel affine); with_cp already keeps only block inputs.
    kwargs = dict(norm_layer="GN") if case == "group_norm" else dict(with_cp=True)
    torch.manual_seed(0)
    model = rb.ResNeSt([1, 1, 1, 1], **kwargs).double()
    compare_with_eager(model, torch.randn(2, 3, 32, 32, dtype=torch.float64), 1e-10, expect_nodes=False)


@pytest.mark.parametrize("float_attention", [False, True], ids=["bf16_attention", "float_attention"])
def test_autocast_bfloat16_close_to_eager(float_attention):
    torch.manual_seed(0)
    model = randomize(rb.ResNeSt([1, 1, 1, 1])).train()
    eager = copy.deepcopy(model)
    memory_efficient.set_memory_efficient(eager, False)
    memory_efficient.set_memory_efficient(model, True)
    for module in list(model.modules()) + list(eager.modules()):
        if float_attention and isinstance(module, rb.SplitAttention):
            # As under CUDA autocast, whose softmax runs in float32: mixed-dtype products in the block.
            module.attention = lambda gap, attention=module.attention: attention(gap).float()
    x, results = torch.randn(2, 3, 96, 96), []
    for m in (model, eager):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(train_step(m, x))
    (out_me, grad_me, nodes), (out_eager, grad_eager, _) = results
    assert nodes == 4
    assert all(rel(e.float(), g.float()) < 2e-2 for e, g in zip(out_eager, out_me))
    assert rel(grad_eager, grad_me) < 5e-2
    params = dict(eager.named_parameters())
    for name, parameter in model.named_parameters():
        assert parameter.grad.dtype == parameter.dtype, name
        if not name.endswith("fc1.bias"):  # (zero up to rounding, see compare_with_eager)
            # Equal on this machine; the tolerance allows another CPU's bfloat16 rounding, not a wrong gradient.
            assert rel(params[name].grad, parameter.grad) < 5e-2, name


def _saved_activation_bytes(forward, x) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves in one forward (weights are the same for all)."""
    storages = {}

    def pack(tensor):
        if not isinstance(tensor, nn.Parameter):
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward(x)
    return sum(storages.values())


def test_saved_activations_at_resnet50_level():
    x = torch.rand(2, 3, 128, 128)
    ours = rb.create_model("resnest50").train()
    memory_efficient.set_memory_efficient(ours, True)
    resnet = torchvision.models.resnet50().train()
    reference = _saved_activation_bytes(resnet, x)
    ratio = _saved_activation_bytes(ours.forward_features, x) / reference
    memory_efficient.set_memory_efficient(ours, False)
    eager_ratio = _saved_activation_bytes(ours.forward_features, x) / reference
    # Measured here: 1.24x eager, 0.92x with the formulation (2x512x512 with weights: 1.38x and 0.99x).
    assert eager_ratio > 1.2  # what the formulation removes (the eager block keeps bn0's input and output)
    assert ratio <= 1.10, ratio  # the target


def test_plain_path_under_tracing_scripting_and_eval():
    model = memory_efficient.set_memory_efficient(rb.ResNeSt([1, 1, 1, 1]), True).train()
    x = torch.rand(2, 3, 64, 64)
    traced = torch.jit.trace(model, x, strict=False, check_trace=False)
    assert "PythonOp" not in str(traced.graph)  # a custom Function would appear as a PythonOp
    scripted = torch.jit.script(copy.deepcopy(model))  # the swapped stages script their plain loop
    assert set(scripted(x)) == {"res2", "res3", "res4", "res5"}
    graph_module = torch.fx.symbolic_trace(model)
    assert "bottleneck_core" not in graph_module.code and uses_memory_efficient(graph_module(x).values()) == 0
    block = model.layer1[0]
    assert memory_efficient.applies(block, x.new_empty(2, 128, 16, 16))
    assert not memory_efficient.applies(block, x.new_empty(2, 128, 16, 16).to("meta"))  # not a supported device
    block.eval()
    assert not memory_efficient.applies(block, x.new_empty(2, 128, 16, 16))
    block.train()
    with torch.no_grad():
        assert not memory_efficient.applies(block, x.new_empty(2, 128, 16, 16))


def test_switch_swaps_the_blocks_and_keeps_the_state():
    model = rb.ResNeSt([1, 1, 1, 1])
    keys = {name: tensor.data_ptr() for name, tensor in model.state_dict().items()}
    assert not memory_efficient.is_memory_efficient(model)  # opt-in (docs/benchmarks.md: its CPU cost)
    assert type(model.layer1[0]) is rb.Bottleneck
    memory_efficient.set_memory_efficient(model, True)
    assert memory_efficient.is_memory_efficient(model)
    assert all(type(stage) is memory_efficient.MemoryEfficientStage for stage in model._stages())
    assert all(type(block) is rb.Bottleneck for stage in model._stages() for block in stage)
    # The same modules and tensors: checkpoints and optimizers see no difference.
    assert {name: tensor.data_ptr() for name, tensor in model.state_dict().items()} == keys
    memory_efficient.set_memory_efficient(model, False)
    assert type(model.layer1[0]) is rb.Bottleneck and type(model.layer1) is not memory_efficient.MemoryEfficientStage
    assert memory_efficient.is_memory_efficient(rb.create_model("resnest14", memory_efficient=True))
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="memory_efficient must be True or False"):
            memory_efficient.set_memory_efficient(model, bad)
        with pytest.raises(ValueError, match="memory_efficient must be True or False"):
            rb.create_model("resnest14", memory_efficient=bad)
