"""The inference fast path computes what the eval-mode model computes, refuses training, and compiles in one graph."""
import pytest
import torch
from torch import nn

import resnest_backbones as rb
from resnest_backbones import FrozenBatchNorm2d, SplitAttention
from resnest_backbones.fast_inference import (FastInferenceError, FusedSplitAttention, is_fast_inference,
                                              to_fast_inference)

ONE_BLOCK = dict(layers=[1, 1, 1, 1])  # every stage present, cheap enough for CPU tests


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random affine parameters and running statistics, so folding BN is really exercised (not ones/zeros)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d, nn.GroupNorm)):
                size = module.num_features if hasattr(module, "num_features") else module.num_channels
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) - 0.5)
            if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            if isinstance(module, nn.Conv2d) and module.bias is not None:
                module.bias.copy_(torch.rand(module.out_channels, generator=generator) - 0.5)
    return model


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


CASES = {
    "radix2": ("resnest14", {}),
    "radix1_sigmoid_avd_first": ("resnest50_fast_1s1x64d", ONE_BLOCK),
    "radix4_cardinality2_avd_first": ("resnest50_fast_4s2x40d", ONE_BLOCK),
    "radix1_cardinality4": ("resnest50_fast_1s4x24d", ONE_BLOCK),
    "radix0_plain_conv": ("resnest14", dict(radix=0)),
    "dilated_os8_official": ("resnest14", dict(output_stride=8)),
    "dilated_os16_timm_layout": ("resnest14", dict(output_stride=16, dilated_layout="timm")),
    "frozen_bn": ("resnest14", dict(norm_layer="FrozenBN")),
    "group_norm": ("resnest14", dict(norm_layer="GN")),
    "resnet_stem_no_avg_down": ("resnest14", dict(deep_stem=False, avg_down=False)),
    "frozen_stages_norm_eval": ("resnest14", dict(frozen_stages=2, norm_eval=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_matches_eager(case):
    name, overrides = CASES[case]
    model = randomize(rb.create_model(name, num_classes=7, **overrides)).eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        reference = model.forward_features(x)
        reference_logits = model(x)
        fused = to_fast_inference(model)
        features = fused.forward_features(x)
        logits = fused(x)
    assert fused is model  # one call, in place, as the adapters use it
    assert list(features) == list(reference)
    for key in reference:
        assert features[key].shape == reference[key].shape
        assert relative_error(features[key], reference[key]) < 1e-5, key
    assert relative_error(logits, reference_logits) < 1e-5


@pytest.mark.parametrize("norm, kept", [("BN", 0), ("FrozenBN", 0), ("GN", None)])
def test_foldable_norms_are_gone_and_group_norm_is_kept(norm, kept):
    model = rb.create_model("resnest14", norm_layer=norm).eval()
    norms_before = sum(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d, nn.GroupNorm)) for m in model.modules())
    to_fast_inference(model)
    bn_left = sum(isinstance(m, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)) for m in model.modules())
    gn_left = sum(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert bn_left == 0
    assert gn_left == (norms_before if kept is None else kept)


def test_subset_of_outputs_and_non_multiple_of_32_input():
    model = randomize(rb.create_model("resnest14", out_features=["res3", "res5"])).eval()
    x = torch.randn(1, 3, 75, 101)
    with torch.no_grad():
        reference = model.forward_features(x)
        features = to_fast_inference(model).forward_features(x)
    assert list(features) == ["res3", "res5"]
    for key in reference:
        assert relative_error(features[key], reference[key]) < 1e-5


def test_fusing_a_training_model_raises():
    model = rb.create_model("resnest14")
    with pytest.raises(FastInferenceError, match="eval"):
        to_fast_inference(model.train())
    # norm_eval keeps the BNs in eval mode, but the model itself (DropBlock, gradients) is still training.
    model = rb.create_model("resnest14", norm_eval=True).train()
    with pytest.raises(FastInferenceError, match="eval"):
        to_fast_inference(model)


def test_fused_model_cannot_go_back_to_training():
    model = to_fast_inference(rb.create_model("resnest14").eval())
    model.eval()  # eval stays allowed (test loops call it)
    with pytest.raises(FastInferenceError, match="inference-only"):
        model.train()


def test_fusing_an_unknown_model_raises():
    with pytest.raises(TypeError, match="ResNeSt"):
        to_fast_inference(nn.Conv2d(3, 3, 1).eval())


@pytest.mark.parametrize("radix, cardinality", [(1, 1), (2, 1), (4, 2), (1, 4)])
def test_fused_split_attention_matches(radix, cardinality):
    module = randomize(SplitAttention(64, 64, cardinality=cardinality, radix=radix)).eval()
    x = torch.randn(3, 64, 9, 7)
    with torch.no_grad():
        reference = module(x)
        fused = to_fast_inference(module)
        out = fused(x)
    assert isinstance(fused, FusedSplitAttention)
    assert relative_error(out, reference) < 1e-5


def test_fused_split_attention_channels_last():
    module = randomize(SplitAttention(64, 64, radix=2)).eval()
    x = torch.randn(2, 64, 10, 10)
    with torch.no_grad():
        reference = module(x)
        out = to_fast_inference(module).to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last))
    assert relative_error(out, reference) < 1e-5


@pytest.mark.parametrize("radix, cardinality", [(1, 1), (2, 1), (4, 2)])
def test_split_attention_compiles_without_graph_breaks(radix, cardinality):
    # aot_eager runs dynamo and AOT autograd (where graph breaks would appear) without a C++ compile: cheap.
    module = randomize(SplitAttention(64, 64, cardinality=cardinality, radix=radix)).eval()
    x = torch.randn(2, 64, 8, 8)
    explanation = torch._dynamo.explain(module)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    with torch.no_grad():
        reference = module(x)
        fused = to_fast_inference(module)
        for candidate in (module, fused):
            torch._dynamo.reset()
            compiled = torch.compile(candidate, fullgraph=True, backend="aot_eager")
            assert relative_error(compiled(x), reference) < 1e-5


def test_fused_split_attention_compiles_with_inductor():
    # One real inductor compile (generates and builds C++): the path users take with torch.compile on CPU.
    module = randomize(SplitAttention(32, 32, radix=2)).eval()
    x = torch.randn(2, 32, 8, 8)
    torch._dynamo.reset()
    with torch.no_grad():
        reference = module(x)
        compiled = torch.compile(to_fast_inference(module), fullgraph=True)
        assert relative_error(compiled(x), reference) < 1e-5


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_onednn_fused_kernels_match_the_plain_path(memory_format):
    # Under no_grad on CPU the fast path runs conv+ReLU and conv+add+ReLU as fused oneDNN kernels; with autograd
    # recording it runs plain ops. Both must equal the unfused model, in either memory format.
    model = randomize(rb.create_model("resnest50_fast_2s2x40d", layers=[1, 1, 1, 1])).eval()
    x = torch.randn(2, 3, 64, 96).contiguous(memory_format=memory_format)
    with torch.no_grad():
        reference = model.forward_features(x)
    fused = to_fast_inference(model).to(memory_format=memory_format)
    with torch.no_grad(), torch.profiler.profile() as profile:
        fast = fused.forward_features(x)
    plain = fused.forward_features(x)
    kernels = {event.name for event in profile.events()}
    assert any(name.startswith("mkldnn::_convolution_pointwise") for name in kernels), sorted(kernels)[:20]
    for key in reference:
        assert relative_error(fast[key], reference[key]) < 1e-5, key
        assert relative_error(plain[key].detach(), reference[key]) < 1e-5, key
        # Computed in channels_last inside, returned in the caller's layout.
        assert fast[key].is_contiguous(memory_format=memory_format), key


def test_nchw_input_runs_channels_last_inside_and_returns_nchw():
    model = randomize(rb.create_model("resnest14")).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        reference = model.forward_features(x)
        fused = to_fast_inference(model)
        fast = fused.forward_features(x)
    for key in reference:
        assert fast[key].is_contiguous() and relative_error(fast[key], reference[key]) < 1e-5, key
    # The stem converts once; every stage then gets channels_last from the one before (no round trip to NCHW
    # between stages), and only the returned features are copied back.
    stage_inputs = []
    hooks = [getattr(fused, name).register_forward_pre_hook(lambda module, args: stage_inputs.append(args[0]))
             for name in fused.layer_names]
    with torch.no_grad():
        features = fused.forward_features(x)
    for hook in hooks:
        hook.remove()
    assert len(stage_inputs) == 4 and features["res5"].is_contiguous()
    for seen in stage_inputs:
        assert seen.is_contiguous(memory_format=torch.channels_last) and not seen.is_contiguous()


def test_classifier_logits_skip_the_copy_back_and_match_eager():
    model = randomize(rb.create_model("resnest14", num_classes=10)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        reference = model(x)
        fused = to_fast_inference(model)
        with torch.profiler.profile(record_shapes=True) as profile:
            logits = fused(x)
    assert relative_error(logits, reference) < 1e-5
    # One activation copied (the input, converted to channels_last in the stem); no feature is copied back for the
    # classifier. (oneDNN's own per-call reorders of the 3x3 weights are clones too: not counted.)
    copies = [event.input_shapes[0] for event in profile.events()
              if event.name == "aten::clone" and event.input_shapes[0][0] == x.size(0)]
    assert copies == [list(x.shape)], copies


def test_the_fused_model_is_a_subclass_of_its_own_class_and_the_core_knows_nothing():
    model = rb.create_model("resnest14").eval()
    plain_class = type(model)
    fused = to_fast_inference(model)
    assert fused is model and isinstance(fused, plain_class) and type(fused) is not plain_class
    assert is_fast_inference(fused) and not is_fast_inference(rb.create_model("resnest14"))
    with pytest.raises(FastInferenceError, match="already fused"):
        to_fast_inference(fused)
    # The core module does not import its optimisations, nor read any flag of theirs.
    import inspect
    source = inspect.getsource(__import__("resnest_backbones.resnest", fromlist=["x"]))
    assert "fast_inference" not in source.split('"""', 2)[2] and "memory_efficient" not in source.split('"""', 2)[2]
