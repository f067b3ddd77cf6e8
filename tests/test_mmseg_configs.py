"""Every shipped mmseg config loads with mmengine's Config (mmseg:: bases), builds its segmentor with our backbone
at output stride 8, and predicts in test mode on CPU. Real mmseg / mmcv ops."""
import glob
import os

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS  # required, never skipped
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import resnest_backbones

CONFIG_DIR = os.path.dirname(resnest_backbones.config_path(
    "mmseg/resnest_s50-d8_deeplabv3_4xb4-160k_ade20k-512x512.py"))
CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIG_DIR, "*.py")))
PAPER = [name for name in CONFIGS if "quickstart" not in name]


def test_every_required_config_is_shipped():
    for depth in ("s50", "s101"):
        assert f"resnest_{depth}-d8_deeplabv3_4xb4-160k_ade20k-512x512.py" in CONFIGS
        assert f"resnest_{depth}-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py" in CONFIGS
    assert sum("quickstart" in name for name in CONFIGS) == 2


@pytest.mark.parametrize("name", PAPER)
def test_paper_recipe(name):
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    depth = "101" if "_s101-" in name else "50"
    backbone = cfg.model.backbone
    assert backbone.type == "ResNeStBackbone" and backbone.variant == f"resnest{depth}"
    assert backbone.init_cfg == dict(type="Pretrained", checkpoint=f"resnest://resnest{depth}")
    assert (backbone.strides, backbone.dilations) == ((1, 2, 1, 1), (1, 1, 2, 4))
    assert backbone.norm_cfg.type == "SyncBN" and cfg.model.pretrained is None
    ade = "ade20k" in name
    assert cfg.train_cfg.max_iters == (160000 if ade else 80000)
    assert cfg.model.decode_head.num_classes == (150 if ade else 19)
    assert tuple(cfg.crop_size) == ((512, 512) if ade else (512, 1024))
    assert cfg.val_evaluator.type == "IoUMetric"


@pytest.mark.parametrize("name", CONFIGS)
def test_builds_and_predicts(name):
    register_all_modules()
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    cfg.model.backbone.init_cfg = None  # no download; the weights do not matter for this check
    model = MODELS.build(cfg.model).eval()
    assert [f["stride"] for f in model.backbone.feature_info] == [4, 8, 8, 8]
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96)))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), training=False)
        (result,) = model(**data, mode="predict")
    prediction = result.pred_sem_seg.data
    assert prediction.shape == (1, 64, 96)
    assert int(prediction.max()) < cfg.model.decode_head.num_classes
