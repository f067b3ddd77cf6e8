"""The adapters train through the core's default training formulation (memory_efficient.py) with no code of their
own: a detectron2 backbone (FREEZE_AT=2, BN) and an OpenMMLab backbone (norm_eval=False, frozen_stages=1) use it in
training by default (inputs large enough for the default: res2/res3 of a 256x256 batch of 2), and their gradients
equal the plain eager block's."""
import copy

import torch
from detectron2.layers import ShapeSpec
from mmdet.registry import MODELS
from mmengine.registry import DefaultScope

import resnest_backbones.detectron2 as rd2
import resnest_backbones.mmdet  # noqa: F401  (registers ResNeStBackbone)
from conftest import ROOT
from resnest_backbones.apps.detectron2_train import load_training_config
from test_memory_efficient import uses_memory_efficient


def _check(backbone, x, features):
    backbone.train()
    eager = copy.deepcopy(backbone)
    eager.memory_efficient = False
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


def test_detectron2_backbone_trains_with_the_formulation():
    cfg = load_training_config(str(ROOT / "configs" / "detectron2" / "quickstart_mask_rcnn_s14_synthetic.yaml"),
                               ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.RESNEST.VARIANT", "resnest14",
                                "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "2"])
    backbone = rd2.build_resnest_backbone(cfg, ShapeSpec(channels=3))
    _check(backbone, torch.rand(2, 3, 256, 256), lambda model, x: list(model(x).values()))


def test_openmmlab_backbone_trains_with_the_formulation():
    with DefaultScope.overwrite_default_scope("mmdet"):
        backbone = MODELS.build(dict(type="ResNeStBackbone", depth=50, base_channels=32, norm_eval=False,
                                     frozen_stages=1))
    _check(backbone, torch.rand(2, 3, 256, 256), lambda model, x: list(model(x)))
