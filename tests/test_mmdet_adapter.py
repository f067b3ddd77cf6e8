"""The registered OpenMMLab backbone in mmdet: mmdet's defaults, exact against mmdet's own ResNeSt through
init_cfg, published variants, training controls identical to mmdet's ResNet, clear errors. Real mmdet / mmengine,
CPU. (Every shipped config and argument combination: test_openmmlab_dropin.py; mmdet's own unit-test checks:
test_openmmlab_upstream_checks.py.)"""
import pytest
import torch
from mmdet.models.backbones import ResNeSt as MMDetResNeSt  # required, never skipped: tools/setup_env.sh installs it
from mmdet.models.backbones import ResNetV1d
from mmdet.registry import MODELS
from mmengine.registry import DefaultScope
from torch import nn

import resnest_backbones as rb
from conftest import randomize_norms, rel_err
from resnest_backbones.mmdet import MMDetResNeStBackbone as ResNeStBackbone  # importing registers it
from resnest_backbones.openmmlab import OpenMMLabResNeStBackbone as SharedBackbone


@pytest.fixture(autouse=True)
def mmdet_scope():
    """mmengine builds from the registry of the current default scope (a runner sets it from the config's
    default_scope); another test may have left mmseg's, whose ResNeStBackbone has mmseg's defaults."""
    with DefaultScope.overwrite_default_scope("mmdet"):
        yield


def _build(**cfg):
    return MODELS.build(dict(type="ResNeStBackbone", **cfg))


def test_registered_in_mmdet_under_its_own_name_with_mmdet_defaults():
    assert MODELS.get("ResNeStBackbone") is ResNeStBackbone and issubclass(ResNeStBackbone, SharedBackbone)
    assert MODELS.get("ResNeSt") is MMDetResNeSt  # mmdet's own is untouched
    model = _build(depth=50, base_channels=32)
    assert model.norm_eval is True and model.conv1[6].out_channels == 32  # mmdet: stem_channels = base_channels


@pytest.mark.parametrize("depth,stem_channels", [(50, 64), (101, 128)])
def test_equals_mmdet_resnest_through_init_cfg(depth, stem_channels, tmp_path):
    torch.manual_seed(depth)
    reference = randomize_norms(MMDetResNeSt(depth=depth, stem_channels=stem_channels, radix=2, reduction_factor=4,
                                             avg_down_stride=True), seed=depth)
    reference.eval()
    # As mmengine saves a detector: state_dict wrapper, backbone. prefix, other heads beside it.
    state = {"backbone." + k: v for k, v in reference.state_dict().items()}
    state["neck.lateral_convs.0.conv.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, tmp_path / "detector.pth")
    ours = _build(depth=depth, stem_channels=stem_channels,
                  init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "detector.pth")))
    ours.init_weights()
    ours.eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert isinstance(got, tuple) and len(got) == len(expected) == 4
    for a, b in zip(expected, got):
        assert rel_err(a, b) <= 1e-5


def test_official_checkpoint_loads_through_init_cfg(tmp_path):
    # An official/timm-layout ImageNet checkpoint (classifier included) of another, randomised model.
    source = randomize_norms(rb.create_model("resnest14", num_classes=1000), seed=3).eval()
    torch.save(source.state_dict(), tmp_path / "resnest14-official.pth")
    ours = _build(variant="resnest14", out_indices=(2, 3),
                  init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "resnest14-official.pth")))
    ours.init_weights()
    ours.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = source.forward_features(x)
        got = ours(x)
    assert rel_err(expected["res4"], got[0]) <= 1e-6 and rel_err(expected["res5"], got[1]) <= 1e-6


def test_wrong_checkpoint_is_a_clear_error(tmp_path):
    torch.save(rb.create_model("resnest14").state_dict(), tmp_path / "s14.pth")
    ours = _build(depth=50, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "s14.pth")))
    with pytest.raises(rb.CheckpointMismatchError, match="missing keys"):
        ours.init_weights()
    ours = _build(depth=50, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "absent.pth")))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        ours.init_weights()


@pytest.mark.parametrize("bad,error,message", [
    (dict(depth=50, frozen_stage=1), TypeError, "did you mean 'frozen_stages'"),
    (dict(depth=50, cardinality=2), TypeError, "unknown argument\\(s\\) 'cardinality'.*groups"),
    (dict(depth=50, deep_stem=False), TypeError, "always uses the deep stem"),
    (dict(depth=50, avg_down=True), TypeError, "remove deep_stem= / avg_down="),
    (dict(variant="resnest5O"), KeyError, "Did you mean 'resnest50'"),
    (dict(depth=34), KeyError, "invalid depth 34 for ResNeSt: use one of \\[14, 26, 50, 101, 152, 200, 269\\]"),
    (dict(depth=50, variant="resnest50"), ValueError, "not both"),
    (dict(depth=50, norm_cfg=dict(type="LN")), ValueError, "use one of BN"),
    (dict(depth=50, norm_cfg=dict(type="GN")), ValueError, "needs num_groups"),
    (dict(depth=50, out_indices=(4,)), ValueError, "out_indices"),
    (dict(depth=50, out_indices=(3,), num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1)), ValueError,
     "below num_stages=3"),
    (dict(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), output_stride=8), ValueError, "not both"),
    (dict(depth=50, strides=(1, 2, 1)), ValueError, "need num_stages=4 entries each"),
    (dict(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), multi_grid=(1, 2)), ValueError,
     "multi_grid .* one dilation per block"),
    (dict(depth=50, strides=(1, 0, 2, 2), dilations=(1, 1, 1, 1)), ValueError, "strides\\[1\\] must be"),
    (dict(depth=50, stem_channels=7), ValueError, "even integer"),
    (dict(depth=50, pretrained="a.pth", init_cfg=dict(type="Pretrained", checkpoint="b.pth")), ValueError,
     "cannot be specified at the same time"),
    (dict(), ValueError, "needs depth="),
])
def test_bad_arguments_name_the_fix(bad, error, message):
    with pytest.raises(error, match=message):
        _build(**bad)


def _trainability(model: nn.Module):
    grads = [p.requires_grad for p in model.parameters()]
    bn_modes = [m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return grads, bn_modes


@pytest.mark.parametrize("frozen_stages", [-1, 0, 1, 3, 4])
@pytest.mark.parametrize("norm_eval", [False, True])
def test_frozen_stages_and_norm_eval_match_mmdet(frozen_stages, norm_eval):
    # mmdet's ResNeSt (a ResNetV1d) and ours create parameters and BNs in the same order (checked by key mapping
    # in the equivalence test), so the flags can be compared position by position.
    reference = MMDetResNeSt(depth=50, stem_channels=64, frozen_stages=frozen_stages, norm_eval=norm_eval)
    ours = _build(depth=50, frozen_stages=frozen_stages, norm_eval=norm_eval)
    assert isinstance(reference, ResNetV1d) and reference.norm_eval is norm_eval
    for mode in (True, False, True):  # train() must re-apply the freezing every time
        reference.train(mode)
        ours.train(mode)
        assert _trainability(ours) == _trainability(reference)
    grads, bn_modes = _trainability(ours)
    assert (not all(grads)) == (frozen_stages >= 0)
    assert any(bn_modes) == (not norm_eval and frozen_stages < 4)  # 4 freezes every stage


def test_norm_cfg_requires_grad_false_and_syncbn():
    ours = _build(depth=50, norm_cfg=dict(type="BN", requires_grad=False))
    norms = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(not p.requires_grad for m in norms for p in m.parameters())
    assert any(p.requires_grad for p in ours.parameters())  # convolutions still train
    sync = _build(depth=50, norm_cfg=dict(type="SyncBN", requires_grad=True))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in sync.modules())
    gn = _build(depth=50, norm_cfg=dict(type="GN", num_groups=32)).eval()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in gn.modules())
    assert [tuple(f.shape) for f in gn(torch.randn(2, 3, 64, 64))][-1] == (2, 2048, 2, 2)
    # mmdet normalises the 32-channel attention vector with 32 groups too: one value per group, which carries no
    # signal, and which torch refuses for a single image even in eval mode, for mmdet's ResNeSt as for ours.
    assert gn.layer1[0].conv2.bn1.num_groups == 32
    theirs = MMDetResNeSt(depth=50, norm_cfg=dict(type="GN", num_groups=32))
    theirs.eval()
    for model in (theirs, gn):
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            model(torch.randn(1, 3, 64, 64))
    # attention_norm_cfg is the documented way out: one group (the core's own default for GN).
    one = _build(depth=50, norm_cfg=dict(type="GN", num_groups=32, requires_grad=False),
                 attention_norm_cfg=dict(type="GN", num_groups=1, requires_grad=False)).eval()
    attention = one.layer1[0].conv2.bn1
    assert attention.num_groups == 1 and not attention.weight.requires_grad
    assert one.layer1[0].conv2.bn0.num_groups == 32
    assert [tuple(f.shape) for f in one(torch.randn(1, 3, 64, 64))][-1] == (1, 2048, 2, 2)


@pytest.mark.parametrize("variant", ["resnest50", "resnest101", "resnest50_fast_2s2x40d"])
def test_published_variants_by_name(variant):
    # variant= builds the published model (its stem width, radix, groups, avd_first), not the depth's defaults.
    ours = _build(variant=variant)
    reference = rb.create_model(variant)
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert all(a.shape == b.shape for a, b in zip(ours.state_dict().values(), reference.state_dict().values()))
    assert ours.layer2[0].avd_first == reference.layer2[0].avd_first
    # Explicit OpenMMLab arguments override the variant's values.
    assert _build(variant=variant, stem_channels=32).conv1[6].out_channels == 32


def test_fast_inference_matches_and_follows_the_weights():
    torch.manual_seed(1)
    plain = randomize_norms(_build(variant="resnest14"), seed=5).eval()
    fast = _build(variant="resnest14", fast_inference=True)
    fast.load_state_dict(plain.state_dict())
    fast.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(plain(x), fast(x)):
            assert rel_err(a, b) <= 1e-4
        assert fast._fused is not None and not any("_fused" in k for k in fast.state_dict())
        # New weights must not be served by the stale fused copy.
        plain = randomize_norms(plain, seed=6)
        fast.load_state_dict(plain.state_dict())
        assert rel_err(plain(x)[-1], fast(x)[-1]) <= 1e-4
        fast.train()
        assert fast._fused is None
