"""frozen_stages, norm_eval, FrozenBatchNorm2d, DropBlock, last_gamma, gradient checkpointing, feature selection."""
import pytest
import torch
from torch import nn

import resnest_backbones as rb
from resnest_backbones import FrozenBatchNorm2d
from conftest import randomize_norms, rel_err

STEM = ("conv1.", "bn1.")


def _expected_frozen(name: str, frozen_stages: int) -> bool:
    if frozen_stages < 0:
        return False
    prefixes = STEM + tuple(f"layer{i}." for i in range(1, frozen_stages + 1))
    return name.startswith(prefixes)


@pytest.mark.parametrize("frozen_stages", [-1, 0, 1, 2, 4])
def test_frozen_stages_stop_exactly_the_right_parameters(frozen_stages):
    model = rb.create_model("resnest14", frozen_stages=frozen_stages).train()
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad != _expected_frozen(name, frozen_stages), name
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.training != _expected_frozen(name + ".", frozen_stages), name


def test_frozen_statistics_stay_fixed_in_train_mode_and_gradients_stop():
    model = randomize_norms(rb.create_model("resnest14", frozen_stages=1)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model.forward_features(torch.randn(2, 3, 64, 64))
    sum(o.mean() for o in out.values()).backward()
    after = model.state_dict()
    for key in before:
        frozen = _expected_frozen(key, 1)
        if "running_" in key:
            assert torch.equal(before[key], after[key]) == frozen, key
    for name, parameter in model.named_parameters():
        assert (parameter.grad is None) == _expected_frozen(name, 1), name


def test_norm_eval_reapplied_by_train():
    model = rb.create_model("resnest14", norm_eval=True)
    model.eval()
    model.train()
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and not any(m.training for m in batch_norms)
    assert model.layer4.training  # the rest trains


def test_frozen_bn_conversion_keeps_statistics_and_outputs():
    torch.manual_seed(0)
    model = randomize_norms(rb.create_model("resnest14")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.forward_features(x)
    FrozenBatchNorm2d.convert_frozen_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        got = model.train().forward_features(x)  # train mode: frozen BN still uses the stored statistics
    for name in expected:
        assert rel_err(expected[name], got[name]) <= 1e-5


def test_convert_frozen_part_only():
    model = rb.create_model("resnest14", frozen_stages=2).convert_frozen_to_frozen_bn()
    assert isinstance(model.bn1, FrozenBatchNorm2d) and isinstance(model.layer2[0].bn1, FrozenBatchNorm2d)
    assert isinstance(model.layer3[0].bn1, nn.BatchNorm2d)


def test_frozen_bn_model_loads_batchnorm_checkpoint():
    source = randomize_norms(rb.create_model("resnest14"))
    target = rb.create_model("resnest14", norm_layer="FrozenBN")
    rb.load_pretrained(target, source.state_dict())
    assert torch.equal(target.layer1[0].bn1.running_var, source.layer1[0].bn1.running_var)


def test_drop_block_only_in_training():
    torch.manual_seed(0)
    plain = randomize_norms(rb.create_model("resnest14")).eval()
    dropped = rb.create_model("resnest14", drop_block_prob=0.2)
    rb.load_pretrained(dropped, plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(plain.forward_features(x)["res5"], dropped.eval().forward_features(x)["res5"]) == 0
        dropped.train()
        torch.manual_seed(1)
        first = dropped.forward_features(x)["res5"]
        torch.manual_seed(2)
        second = dropped.forward_features(x)["res5"]
    assert not torch.allclose(first, second)
    assert isinstance(dropped.layer3[0].drop_block1, rb.DropBlock2D) and isinstance(dropped.layer1[0].drop_block1,
                                                                                    nn.Identity)


def test_drop_block_drops_about_the_requested_fraction():
    layer = rb.DropBlock2D(0.1, 3).train()
    out = layer(torch.ones(8, 16, 32, 32))
    assert 0.05 < (out == 0).float().mean().item() < 0.15
    assert abs(out.mean().item() - 1.0) < 0.02  # rescaled


def test_last_gamma_zero_inits_last_bn():
    model = rb.create_model("resnest14", last_gamma=True)
    assert all(block.bn3.weight.abs().sum() == 0 for block in model.layer1)
    assert model.layer1[0].bn1.weight.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = rb.create_model("resnest14").train()
    checkpointed = rb.create_model("resnest14", with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    grads, calls = [], []
    for model in (plain, checkpointed):
        count = []
        model.layer2[0].conv1.register_forward_hook(lambda *_: count.append(1))
        sum(o.sum() for o in model.forward_features(x).values()).backward()
        grads.append(model.layer2[0].conv2.conv.weight.grad.clone())
        calls.append(len(count))
    assert rel_err(grads[0], grads[1]) <= 1e-5
    # Equal gradients alone would also hold if with_cp were ignored: checkpointing re-runs the block's first layer in
    # backward (the recompute stops early, so not the whole block).
    assert calls == [1, 2]


def test_out_features_and_unbuilt_stages():
    model = rb.create_model("resnest14", out_features=["res3"]).eval()
    assert model.layer3 is None and model.layer4 is None  # not built: no parameters DDP would find unused
    assert not any(name.startswith(("layer3.", "layer4.")) for name in model.state_dict())
    assert model.feature_info == [dict(name="res3", channels=512, stride=8, module="layer2", num_chs=512, reduction=8)]
    out = model.forward_features(torch.randn(1, 3, 64, 64))
    assert list(out) == ["res3"]
    # The unbuilt stages of a full checkpoint are reported as skipped, not as errors.
    report = rb.load_pretrained(model, rb.create_model("resnest14", num_classes=10).state_dict())
    assert any(k.startswith("layer4.") for k in report.skipped) and "fc.weight" in report.skipped


@pytest.mark.parametrize("size", [(1, 3, 97, 131), (2, 3, 33, 65), (1, 3, 224, 224)])
def test_input_sizes_not_multiple_of_32(size):
    model = rb.create_model("resnest14").eval()
    with torch.no_grad():
        out = model.forward_features(torch.randn(*size))
    height = size[2]
    for info in model.feature_info:
        expected = height
        for _ in range({4: 2, 8: 3, 16: 4, 32: 5}[info["stride"]]):
            expected = (expected + 1) // 2  # every stride-2 op here rounds up (padding / ceil_mode)
        assert out[info["name"]].shape[-2] == expected


def test_group_norm_attention_gets_one_group_and_keeps_requires_grad():
    # With GN everywhere, split attention's norm of its 1x1 attention vector gets one group (32 groups over a 1x1
    # map would normalise every value to 0); a frozen stage's stays frozen, a trained stage's trains.
    model = rb.create_model("resnest14", norm_layer="GN", frozen_stages=1).train()
    for stage, trains in ((model.layer1, False), (model.layer3, True)):
        attention, splits = stage[0].conv2.bn1, stage[0].conv2.bn0
        assert isinstance(attention, nn.GroupNorm) and attention.num_groups == 1 and splits.num_groups == 32
        assert attention.weight.requires_grad == attention.bias.requires_grad == trains == splits.weight.requires_grad


@pytest.mark.parametrize("norm", ["BN", "GN", "FrozenBN", "SyncBN", lambda c: nn.GroupNorm(8, c)])
def test_norm_layer_choices_build_and_run(norm):
    model = rb.create_model("resnest14", norm_layer=norm).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 64, 64))["res5"].shape == (1, 2048, 2, 2)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(KeyError, match="Did you mean 'resnest50'"):
        rb.create_model("resnet50")
    with pytest.raises(ValueError, match="Unknown norm_layer"):
        rb.create_model("resnest14", norm_layer="LN")
    with pytest.raises(ValueError, match="output_stride"):
        rb.create_model("resnest14", output_stride=4)
    with pytest.raises(ValueError, match="out_features"):
        rb.create_model("resnest14", out_features=["res6"])
    with pytest.raises(TypeError):
        rb.create_model("resnest14", raddix=2)
    with pytest.raises(ValueError, match="N, C, H, W"):
        rb.create_model("resnest14").forward_features(torch.randn(3, 64, 64))
