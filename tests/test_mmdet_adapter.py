"""The registered OpenMMLab backbone in mmdet: exact against mmdet's own ResNeSt, init_cfg loading, training
controls identical to mmdet's ResNet, clear errors. Real mmdet / mmengine, CPU."""
import pytest
import torch
from mmdet.models.backbones import ResNeSt as MMDetResNeSt  # required, never skipped: tools/setup_env.sh installs it
from mmdet.models.backbones import ResNetV1d
from mmdet.registry import MODELS
from torch import nn

import resnest_backbones as rb
import resnest_backbones.mmdet  # noqa: F401  registers ResNeStBackbone
from conftest import randomize_norms, rel_err
from resnest_backbones.openmmlab import ResNeStBackbone


def _build(**cfg):
    return MODELS.build(dict(type="ResNeStBackbone", **cfg))


def test_registered_in_mmdet_under_its_own_name():
    assert MODELS.get("ResNeStBackbone") is ResNeStBackbone
    assert MODELS.get("ResNeSt") is MMDetResNeSt  # mmdet's own is untouched


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
    ours = _build(depth=depth, init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "detector.pth")))
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
    (dict(variant="resnest5O"), KeyError, "Did you mean 'resnest50'"),
    (dict(depth=34), ValueError, "depths: \\[14, 26, 50, 101, 200, 269\\]"),
    (dict(depth=50, norm_cfg=dict(type="LN")), ValueError, "use one of BN"),
    (dict(depth=50, strides=(1, 2, 2, 2), dilations=(1, 1, 2, 2)), ValueError, "Unsupported strides"),
    (dict(depth=50, out_indices=(4,)), ValueError, "out_indices"),
    (dict(), ValueError, "variant='resnest50'"),
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
    assert isinstance(reference, ResNetV1d)
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
    gn = _build(depth=50, norm_cfg=dict(type="GN", num_groups=16)).eval()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in gn.modules())
    assert [tuple(f.shape) for f in gn(torch.randn(1, 3, 64, 64))][-1] == (1, 2048, 2, 2)


def test_with_cp_gives_same_gradients():
    torch.manual_seed(0)
    plain = _build(variant="resnest14", norm_eval=True).train()
    checkpointed = _build(variant="resnest14", norm_eval=True, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    calls = []
    for model in (plain, checkpointed):
        count = []
        model.layer2[0].conv1.register_forward_hook(lambda *_: count.append(1))
        sum(f.sum() for f in model(x)).backward()
        calls.append(len(count))
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert rel_err(a.grad, b.grad) <= 1e-5, name
    # Equal gradients alone would also hold if with_cp were ignored: checkpointing re-runs the block's first layer in
    # backward (the recompute stops early, so not the whole block).
    assert calls == [1, 2]


def test_mmengine_checkpoint_with_history_buffers_loads_weights_only(tmp_path):
    # What `mim test` / resume read: a checkpoint holding mmengine's message hub (HistoryBuffer logs, numpy eta).
    import numpy as np
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance("resnest_test_hub")
    for value in (1.0, 0.5, 0.25):
        hub.update_scalar("train/loss", value)
    hub.update_info("eta", np.float64(12.5))
    path = tmp_path / "iter_3.pth"
    torch.save({"meta": {"iter": 3}, "state_dict": {"w": torch.ones(1)}, "message_hub": hub.state_dict()}, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert loaded["message_hub"]["log_scalars"]["train/loss"].mean() == pytest.approx(0.5833333)
    assert loaded["message_hub"]["runtime_info"]["eta"] == 12.5


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
