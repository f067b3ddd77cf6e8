"""Our versions of the checks in mmdet's and mmseg's own unit tests for their ``ResNeSt`` and ``ResNet`` backbones
(``tests/test_models/test_backbones/test_resnest.py`` and ``test_resnet.py`` of mmdet 3.x and mmseg 1.2.2), run
against ``ResNeStBackbone`` from each framework's registry. Each test names the upstream test it ports; checks
that only concern ResNet's BasicBlock, the non-deep stem or features we refuse (caffe style, DCN, plugins) are
ported as "refused with a message" or left out (see docs/openmmlab.md). Module names differ where ours follow the
official checkpoints (``conv1.N`` + ``bn1`` for their ``stem.N``, ``conv2.conv`` for their split-attention conv)."""
import pytest
import torch
from mmdet.models.backbones import ResNeSt as MMDetResNeSt  # required, never skipped
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope
from mmseg.models.backbones import ResNeSt as MMSegResNeSt
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import nn

import resnest_backbones.mmdet  # noqa: F401  registers ResNeStBackbone (mmdet defaults)
import resnest_backbones.mmseg  # noqa: F401  registers ResNeStBackbone (mmseg defaults)
from resnest_backbones import Bottleneck
from resnest_backbones.resnest import Stage

REGISTRIES = {"mmdet": MMDET_MODELS, "mmseg": MMSEG_MODELS}
BOTH = pytest.mark.parametrize("framework", ["mmdet", "mmseg"])


def build(framework: str, **cfg) -> nn.Module:
    # In the framework's default scope, as its runner sets it (mmengine builds from the current scope's registry).
    with DefaultScope.overwrite_default_scope(framework):
        return REGISTRIES[framework].build(dict(type="ResNeStBackbone", **cfg))


def norms(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm))]


def batch_norms_training(module: nn.Module):
    return {m.training for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def shapes(features):
    return [tuple(f.shape) for f in features]


# ---------------------------------------------------------------- test_resnest.py
def test_resnest_bottleneck():
    """test_resnest_bottleneck: avd pool takes the stride, split-attention width, train-mode forward."""
    block = Bottleneck(64, 256, stride=2, radix=2, reduction_factor=4)  # the core's block, as theirs (64, 256)
    assert block.avd_layer.stride == 2 and block.conv2.out_channels == 256
    assert block.conv2.conv.stride == (1, 1)  # the conv itself does not stride (avd last)
    block = Bottleneck(64, 16, radix=2, reduction_factor=4).train()
    assert block(torch.randn(2, 64, 56, 56)).shape == (2, 64, 56, 56)
    with pytest.raises(AssertionError, match="style must be 'pytorch' or 'caffe'"):
        build("mmdet", depth=50, style="tensorflow")


@BOTH
def test_resnest_backbone_depth(framework):
    """test_resnest_backbone: depth 18 is a KeyError; the depths of their arch_settings build."""
    with pytest.raises(KeyError, match="invalid depth 18"):
        build(framework, depth=18)


def test_resnest_backbone_mmdet():
    """mmdet's test_resnest_backbone (both 3.x versions): train() (norm_eval True by default), batch 2 at 32x32,
    at full width and with base_channels=4 (the stem follows base_channels in mmdet)."""
    model = build("mmdet", depth=50, radix=2, reduction_factor=4, out_indices=(0, 1, 2, 3))
    model.train()
    assert batch_norms_training(model) == {False}
    with torch.no_grad():
        assert shapes(model(torch.randn(2, 3, 32, 32))) == [(2, 256, 8, 8), (2, 512, 4, 4), (2, 1024, 2, 2),
                                                            (2, 2048, 1, 1)]
    model = build("mmdet", depth=50, base_channels=4, radix=2, reduction_factor=4, out_indices=(0, 1, 2, 3))
    model.train()
    assert model.conv1[6].out_channels == 4
    with torch.no_grad():
        assert shapes(model(torch.randn(2, 3, 32, 32))) == [(2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2),
                                                            (2, 128, 1, 1)]


def test_resnest_backbone_mmseg():
    """mmseg's test_resnest_backbone: init_weights, train() with BN in training mode (norm_eval False), 224x224."""
    model = build("mmseg", depth=50, radix=2, reduction_factor=4, out_indices=(0, 1, 2, 3))
    model.init_weights()
    model.train()
    assert batch_norms_training(model) == {True}
    with torch.no_grad():
        assert shapes(model(torch.randn(2, 3, 224, 224))) == [(2, 256, 56, 56), (2, 512, 28, 28),
                                                              (2, 1024, 14, 14), (2, 2048, 7, 7)]


@BOTH
def test_batch_of_one_in_training_fails_as_theirs(framework):
    """Their batch-1 training forwards pass only with norm_eval=True (mmdet's default): split attention
    batch-normalises a 1x1 map. With norm_eval=False both theirs and ours refuse batch 1 (a ValueError); ours says
    which layer and how to fix it in the config."""
    theirs = {"mmdet": MMDetResNeSt, "mmseg": MMSegResNeSt}[framework](depth=50, base_channels=8, norm_eval=False)
    ours = build(framework, depth=50, base_channels=8, norm_eval=False)
    theirs.train()  # (their train() returns None)
    ours.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        theirs(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"attention BatchNorm .* Fix: train_dataloader.batch_size >= 2 .*norm_cfg"):
        ours(torch.randn(1, 3, 32, 32))
    for model in (theirs, ours):  # and with norm_eval=True both run
        model.norm_eval = True
        model.train()
        assert len(model(torch.randn(1, 3, 32, 32))) == 4


# ---------------------------------------------------------------- test_resnet.py: test_resnet_bottleneck
def test_resnet_bottleneck_style_and_strides():
    """test_resnet_bottleneck, style checks: pytorch style keeps the 1x1 conv at stride 1; in ResNeSt the avd pool
    (not conv2) takes the stride. 'caffe' is refused (not honoured), 'tensorflow' fails as theirs."""
    model = build("mmdet", depth=50, base_channels=16)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.conv.stride == (1, 1) and block.avd_layer.stride == 2
    no_avd = build("mmdet", depth=50, base_channels=16, avg_down_stride=False).layer2[0]
    assert no_avd.avd_layer is None and no_avd.conv2.conv.stride == (2, 2)
    with pytest.raises(AssertionError, match="style='caffe' is not supported"):
        build("mmdet", depth=50, style="caffe")


@pytest.mark.parametrize("bad,message", [
    (dict(dcn=dict(type="DCN", deform_groups=1, fallback_on_stride=False)), "dcn is not supported"),
    (dict(dcn=dict(type="DCN", deform_groups=1), conv_cfg=dict(type="Conv")), "dcn is not supported"),
    (dict(dcn=dict(type="DCN", deform_groups=1), stage_with_dcn=(True,)), "dcn is not supported"),
    (dict(plugins=[dict(cfg=dict(type="ContextBlock", ratio=1. / 16), position="after_conv3")]),
     "plugins are not supported"),
    (dict(plugins=[dict(cfg=dict(type="ContextBlock", ratio=1. / 16), stages=(False, True, True),
                        position="after_conv3")]), "plugins are not supported"),
    (dict(conv_cfg=dict(type="ConvWS")), "conv_cfg=.* is not supported"),
])
def test_resnet_bottleneck_dcn_and_plugins_are_refused(bad, message):
    """test_resnet_bottleneck / test_resnet_backbone DCN and plugin cases: theirs builds or asserts; ours refuses
    every DCN / plugin config with a message (an AssertionError too, as their bad-argument errors)."""
    with pytest.raises(AssertionError, match=message):
        build("mmdet", depth=50, **bad)
    assert isinstance(build("mmdet", depth=50, base_channels=8, stage_with_dcn=(True,) * 4, conv_cfg=dict(
        type="Conv2d")), nn.Module)  # stage_with_dcn without dcn is ignored, as theirs; plain convs accepted


def test_resnet_bottleneck_with_cp():
    """test_resnet_bottleneck / test_resnet_backbone with_cp: every block is checkpointed; forward and backward
    work and give the plain model's gradients."""
    torch.manual_seed(0)
    plain = build("mmdet", depth=50, base_channels=4)
    checkpointed = build("mmdet", depth=50, base_channels=4, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    stages = [stage for stage in checkpointed.modules() if isinstance(stage, Stage)]
    assert len(stages) == 4 and all(stage.with_cp for stage in stages)  # all() of nothing would pass
    x = torch.randn(2, 3, 32, 32)
    for model in (plain, checkpointed):
        model.train()
        sum(f.sum() for f in model(x)).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name


# ---------------------------------------------------------------- test_resnet.py: test_resnet_res_layer
def test_resnet_res_layer_shortcuts():
    """test_resnet_res_layer, ResNeSt's case (avg_down=True): no shortcut when in == out; a 1x1 projection to 4x
    planes; with stride 2 an AvgPool2d then a stride-1 conv."""
    layer1 = build("mmseg", depth=50, base_channels=16).layer1  # stem 64 = 4 * 16: no projection needed
    assert len(layer1) == 3 and all(block.downsample is None for block in layer1)
    assert all(block.conv1.in_channels == 64 and block.conv1.out_channels == 16 for block in layer1)
    model = build("mmseg", depth=50)
    assert model.layer1[0].downsample[1].out_channels == 256 and model.layer1[0].downsample[1].stride == (1, 1)
    first = model.layer2[0]
    assert isinstance(first.downsample[0], nn.AvgPool2d) and first.downsample[0].stride == 2
    assert first.downsample[1].out_channels == 512 and first.downsample[1].stride == (1, 1)
    assert all(block.downsample is None for block in list(model.layer2)[1:])
    with torch.no_grad():
        assert model.eval().layer2(torch.randn(1, 256, 56, 56)).shape == (1, 512, 28, 28)


@pytest.mark.parametrize("extra,layer3,layer4", [
    (dict(), [2] * 6, [4] * 3),  # every block uses the stage dilation
    (dict(contract_dilation=True), [1] + [2] * 5, [2, 4, 4]),  # the first block d // 2
    (dict(contract_dilation=True, multi_grid=(1, 2, 4)), [1] + [2] * 5, [1, 2, 4]),  # last stage: as given
])
def test_resnet_res_layer_dilations(extra, layer3, layer4):
    """test_resnet_res_layer (mmseg) dilation, contract_dilation and multi_grid cases, in the -d8 layout."""
    model = build("mmseg", depth=50, base_channels=8, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), **extra)
    assert [block.conv2.conv.dilation[0] for block in model.layer3] == layer3
    assert [block.conv2.conv.dilation[0] for block in model.layer4] == layer4
    assert [block.conv2.conv.padding[0] for block in model.layer4] == layer4
    assert model.layer3[0].avd_layer is None  # stride 1: no avd pool, as theirs
    with torch.no_grad():
        assert shapes(model.eval()(torch.randn(1, 3, 64, 64)))[-1] == (1, 256, 8, 8)


# ---------------------------------------------------------------- test_resnet.py: test_resnest_stem (mmdet)
def test_resnet_stem_channels():
    """mmdet's test_resnest_stem, ResNetV1d part: widths stem_channels // 2, // 2, stem_channels; the first block
    reads stem_channels; the default follows base_channels in mmdet and stays 64 in mmseg."""
    model = build("mmdet", depth=50, stem_channels=6)
    stem = model.conv1
    assert (stem[0].out_channels, stem[1].num_features, stem[3].out_channels, stem[4].num_features,
            stem[6].out_channels, model.bn1.num_features) == (3, 3, 3, 3, 6, 6)
    assert model.layer1[0].conv1.in_channels == 6
    assert build("mmdet", depth=50).conv1[6].out_channels == 64
    assert build("mmdet", depth=50, base_channels=8).conv1[6].out_channels == 8
    assert build("mmseg", depth=50, base_channels=8).conv1[6].out_channels == 64
    with pytest.raises(AssertionError, match="stem_channels must be an even integer"):
        build("mmdet", depth=50, stem_channels=3)  # theirs builds widths 1, 1, 3; refused here


# ---------------------------------------------------------------- test_resnet.py: test_resnet_backbone
@pytest.mark.parametrize("bad,error", [
    (dict(depth=20), KeyError),
    (dict(depth=50, num_stages=0), AssertionError),
    (dict(depth=50, num_stages=5), AssertionError),
    (dict(depth=50, strides=(1,), dilations=(1, 1), num_stages=3), AssertionError),
    (dict(depth=50, out_indices=(4,)), AssertionError),
    (dict(depth=50, pretrained=0), TypeError),
    (dict(depth=50, style="tensorflow"), AssertionError),
])
@BOTH
def test_resnet_backbone_errors(framework, bad, error):
    """test_resnet_backbone's error cases, with their exception types."""
    with pytest.raises(error):
        build(framework, **bad)


@BOTH
def test_resnet_backbone_norm_eval_and_frozen_stages(framework):
    """test_resnet_backbone: norm_eval=True keeps every BN in eval after train(); frozen_stages=1 (ResNetV1d):
    the deep stem (conv1.0-6 + bn1, their stem.0-8) and layer1 frozen, their BNs in eval, the rest training."""
    model = build(framework, depth=50, base_channels=8, norm_eval=True)
    model.init_weights()
    model.train()
    assert batch_norms_training(model) == {False}
    model = build(framework, depth=50, base_channels=8, frozen_stages=1, norm_eval=False)
    model.init_weights()
    model.train()
    assert len(model.conv1) == 7  # their 9-module stem minus its last norm and ReLU (our bn1, relu)
    for frozen in (model.conv1, model.bn1, model.layer1):
        assert batch_norms_training(frozen) == {False}
        assert not any(p.requires_grad for p in frozen.parameters())
    assert batch_norms_training(model.layer2) == {True} and all(p.requires_grad for p in model.layer2.parameters())


@BOTH
def test_resnet_backbone_forwards(framework):
    """test_resnet_backbone forwards: out_indices, BN / GN norm types (the attention norm included, with
    norm_cfg's num_groups as theirs), ResNetV1d forward shapes. mmdet's batch-1 training forwards at 32x32 with
    base_channels 4 / 8 (norm_eval=True); mmseg's at batch 2 (norm_eval=False, see the batch-1 test)."""
    batch = 1 if framework == "mmdet" else 2
    for base in (4, 8):
        model = build(framework, depth=50, base_channels=base, out_indices=(0, 1, 2))
        assert norms(model) and all(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in norms(model))
        model.train()
        assert shapes(model(torch.randn(batch, 3, 32, 32))) == [(batch, 4 * base, 8, 8), (batch, 8 * base, 4, 4),
                                                                (batch, 16 * base, 2, 2)]
    model = build(framework, depth=50, base_channels=16, norm_cfg=dict(type="GN", num_groups=2, requires_grad=True))
    assert all(isinstance(m, nn.GroupNorm) and m.num_groups == 2 for m in norms(model))
    assert model.layer1[0].conv2.bn1.num_groups == 2  # their conv2.gn1
    model.init_weights()
    model.train()
    assert shapes(model(torch.randn(1, 3, 32, 32))) == [(1, 64, 8, 8), (1, 128, 4, 4), (1, 256, 2, 2),
                                                        (1, 512, 1, 1)]


@BOTH
def test_resnet_backbone_zero_init_residual_like_their_resnest(framework):
    """test_resnet_backbone's zero_init_residual: their ResNeSt does NOT zero the last norm (the check only
    applies to ResNet's own block classes), so neither does ours; last_gamma=True does."""
    theirs = {"mmdet": MMDetResNeSt, "mmseg": MMSegResNeSt}[framework](depth=50, base_channels=8,
                                                                        zero_init_residual=True)
    theirs.init_weights()
    ours = build(framework, depth=50, base_channels=8, zero_init_residual=True)
    ours.init_weights()
    assert all(theirs.layer1[0].bn3.weight == 1) and all(ours.layer1[0].bn3.weight == 1)
    zeroed = build(framework, depth=50, base_channels=8, last_gamma=True)
    assert all((block.bn3.weight == 0).all() for stage in (zeroed.layer1, zeroed.layer4) for block in stage)
