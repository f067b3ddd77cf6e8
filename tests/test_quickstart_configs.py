"""What every quick-start config shares (README "Quick start"): a fixed default seed, so that the documented command
gives the documented seed-0 run, and, for mmengine, the expected-time hook selected and registered by a module the
config imports (detectron2's trainer adds its own hook: tests/test_expected_time.py)."""
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

import resnest_backbones
from conftest import ROOT
from resnest_backbones.apps.detectron2_lazy_train import load_lazy_config
from resnest_backbones.apps.detectron2_train import load_training_config

MMENGINE = ["mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py",
            "mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-lvis-v1.py",
            "mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py",
            "mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py"]


@pytest.mark.parametrize("name", MMENGINE)
def test_mmengine_quick_starts_fix_the_seed_and_log_the_expected_time(name):
    cfg = Config.fromfile(resnest_backbones.config_path(name))
    assert cfg.randomness.seed == 0
    assert dict(type="ExpectedTimeHook") in cfg.custom_hooks
    # A fresh process importing only what mmengine imports for this config finds the hook in its registry.
    check = ("import importlib, sys; from mmengine.registry import HOOKS; "
             "[importlib.import_module(m) for m in sys.argv[1:]]; assert HOOKS.get('ExpectedTimeHook')")
    subprocess.run([sys.executable, "-c", check, *cfg.custom_imports.imports], cwd=str(ROOT), check=True)


def test_detectron2_quick_starts_fix_the_seed():
    cfg = load_training_config(resnest_backbones.config_path("detectron2/quickstart_mask_rcnn_s14_synthetic.yaml"))
    assert cfg.SEED == 0
    lazy = load_lazy_config("configs/detectron2/lazy/quickstart_mask_rcnn_s14_synthetic.py")
    assert lazy.train.seed == 0


def test_mmdet_quick_start_backbone_keeps_slow_bn_statistics():
    """The BN momentum of the config reaches every BatchNorm of the backbone (the evaluated statistics then average
    about the last 100 iterations, not the last 10)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(resnest_backbones.config_path(MMENGINE[0]))
    __import__(cfg.custom_imports.imports[0])
    momentum = cfg.model.backbone.norm_cfg.momentum
    assert momentum == 0.01
    norms = [m for m in MODELS.build(cfg.model.backbone).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == momentum for m in norms)
