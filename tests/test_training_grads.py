"""Training through the core model gives timm's forward, gradients and running statistics: the plain eager forward
(the default) and the memory-efficient formulation (memory_efficient.py, checked to be in use)."""
import pytest
import timm
import torch

import resnest_backbones as rb
from resnest_backbones.memory_efficient import set_memory_efficient
from conftest import randomize_norms
from test_memory_efficient import uses_memory_efficient


def _timm_features(model, x):
    x = model.maxpool(model.act1(model.bn1(model.conv1(x))))
    outputs = []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = stage(x)
        outputs.append(x)
    return outputs


@pytest.mark.parametrize("timm_name, our_name, memory_efficient", [
    ("resnest14d", "resnest14", True), ("resnest14d", "resnest14", False),
    ("resnest50d_4s2x40d", "resnest50_fast_4s2x40d", True)])
def test_train_mode_forward_and_gradients_match_timm(timm_name, our_name, memory_efficient):
    reference = randomize_norms(timm.create_model(timm_name)).train()
    ours = rb.create_model(our_name, num_classes=1000)
    rb.load_pretrained(ours, reference.state_dict())
    ours.train()
    set_memory_efficient(ours, memory_efficient)
    x = torch.randn(2, 3, 96, 96)
    expected = _timm_features(reference, x)  # once only: each train-mode forward updates running statistics
    weights = [torch.randn(f.shape[1:]) for f in expected]  # a loss that weighs every element differently
    sum((f * w).sum() for f, w in zip(expected, weights)).backward()
    got = list(ours.forward_features(x).values())
    assert (uses_memory_efficient(got) > 0) == memory_efficient  # True: on (opt-in), for any input size
    sum((f * w).sum() for f, w in zip(got, weights)).backward()
    for out, ref in zip(got, expected):
        assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-5
    ours_params = dict(ours.named_parameters())
    compared = 0
    for name, parameter in reference.named_parameters():
        # fc1's bias feeds a train-mode BN, which subtracts the batch mean: its true gradient is zero and the
        # computed one is rounding noise, so relative errors there mean nothing.
        if parameter.grad is None or name.startswith("fc.") or name.endswith("fc1.bias"):
            continue
        grad = ours_params[name].grad
        error = ((grad - parameter.grad).abs().max() / parameter.grad.abs().max().clamp(min=1e-12)).item()
        assert error < 1e-4, name
        compared += 1
    assert compared > 50
    # The running statistics (and num_batches_tracked) were updated identically too.
    ours_buffers = dict(ours.named_buffers())
    for name, buffer in reference.named_buffers():
        assert torch.allclose(ours_buffers[name], buffer, rtol=1e-5, atol=1e-6), name
