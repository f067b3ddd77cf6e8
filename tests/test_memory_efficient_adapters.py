"""The adapters switch the core's training formulation (memory_efficient.py) on with their own config styles, and
train through it with no code of their own: a detectron2 backbone (FREEZE_AT=2, BN, ``MODEL.RESNEST.MEMORY_EFFICIENT
True``) and an OpenMMLab backbone (norm_eval=False, frozen_stages=1, ``memory_efficient=True``) use it in training,
and their gradients equal the plain eager block's. It is opt-in: off unless configured."""
import copy

import pytest
import torch
from detectron2.layers import ShapeSpec
from mmdet.registry import MODELS
from mmengine.registry import DefaultScope

import resnest_backbones.detectron2 as rd2
import resnest_backbones.mmdet  # noqa: F401  (registers ResNeStBackbone)
from conftest import ROOT
from resnest_backbones import memory_efficient
from resnest_backbones.apps.detectron2_train import load_training_config
from test_memory_efficient import uses_memory_efficient


def _check(backbone, x, features):
    backbone.train()
    eager = copy.deepcopy(backbone)
    memory_efficient.set_memory_efficient(eager, False)
    results = []
    for model in (backbone, eager):
        torch.manual_seed(0)
        outputs = features(model, x)
        results.append((outputs, uses_memory_efficient(outputs)))
        sum(o.double().pow(2).mean() for o in outputs).backward()
    (ours, nodes), (plain, plain_nodes) = results
    assert nodes > 0 and plain_nodes == 0
    for a, b in zip(ours, plain):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    plain_params = dict(eager.named_parameters())
    trained = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    assert trained
    for name, parameter in trained:
        reference = plain_params[name].grad
        assert torch.allclose(parameter.grad, reference, rtol=1e-4, atol=1e-4 * reference.abs().max()), name


def _detectron2_config(*opts):
    return load_training_config(str(ROOT / "configs" / "detectron2" / "quickstart_mask_rcnn_s14_synthetic.yaml"),
                                ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.RESNEST.VARIANT", "resnest14",
                                 "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "2", *opts])


def test_detectron2_backbone_trains_with_the_formulation():
    cfg = _detectron2_config("MODEL.RESNEST.MEMORY_EFFICIENT", "True")
    backbone = rd2.build_resnest_backbone(cfg, ShapeSpec(channels=3))
    _check(backbone, torch.rand(2, 3, 256, 256), lambda model, x: list(model(x).values()))


def test_openmmlab_backbone_trains_with_the_formulation():
    with DefaultScope.overwrite_default_scope("mmdet"):
        backbone = MODELS.build(dict(type="ResNeStBackbone", depth=50, base_channels=32, norm_eval=False,
                                     frozen_stages=1, memory_efficient=True))
    _check(backbone, torch.rand(2, 3, 256, 256), lambda model, x: list(model(x)))


def test_detectron2_switch_is_off_by_default_and_checked():
    is_on = memory_efficient.is_memory_efficient
    assert not is_on(rd2.build_resnest_backbone(_detectron2_config(), ShapeSpec(channels=3)))
    assert is_on(rd2.build_resnest_backbone(_detectron2_config("MODEL.RESNEST.MEMORY_EFFICIENT", "True"),
                                            ShapeSpec(channels=3)))
    with pytest.raises(ValueError, match="MODEL.RESNEST.MEMORY_EFFICIENT"):  # yacs' type check names the key
        _detectron2_config("MODEL.RESNEST.MEMORY_EFFICIENT", "yes")
    cfg = _detectron2_config()
    cfg.defrost()
    cfg.MODEL.RESNEST.MEMORY_EFFICIENT = 1  # set in code, past yacs' check
    with pytest.raises(ValueError, match="MODEL.RESNEST.MEMORY_EFFICIENT: memory_efficient must be True or False"):
        rd2.build_resnest_backbone(cfg, ShapeSpec(channels=3))


@pytest.mark.parametrize("scope", ["mmdet", "mmseg"])
def test_openmmlab_switch_is_off_by_default_and_checked(scope):
    import resnest_backbones.mmseg  # noqa: F401  (registers ResNeStBackbone in mmseg)
    from mmseg.registry import MODELS as MMSEG_MODELS
    registry = MODELS if scope == "mmdet" else MMSEG_MODELS
    with DefaultScope.overwrite_default_scope(scope):
        is_on = memory_efficient.is_memory_efficient
        assert not is_on(registry.build(dict(type="ResNeStBackbone", depth=14)))
        assert is_on(registry.build(dict(type="ResNeStBackbone", depth=14, memory_efficient=True)))
        with pytest.raises(ValueError, match="memory_efficient must be True or False"):
            registry.build(dict(type="ResNeStBackbone", depth=14, memory_efficient="yes"))
