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
from config_helpers import base_list, framework_config

CONFIG_DIR = os.path.dirname(resnest_backbones.config_path(
    "mmseg/resnest_s50-d8_deeplabv3_4xb4-160k_ade20k-512x512.py"))
CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIG_DIR, "*.py")))
PAPER = [name for name in CONFIGS if "quickstart" not in name]
QUICK_STARTS = [name for name in CONFIGS if "quickstart" in name]


def expected_backbone(name: str) -> dict:
    """The backbone each config had before the configs were split into shared bases (written out here, not read from
    a config): output stride 8 in the official dilated layout; the paper configs with SyncBN and the official
    ImageNet weights, the quick starts ResNeSt-14 with BN from scratch."""
    common = dict(type="ResNeStBackbone", out_indices=(0, 1, 2, 3), strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                  dilated_layout="official", norm_eval=False)
    if "quickstart" in name:
        return dict(common, variant="resnest14", norm_cfg=dict(type="BN", requires_grad=True), init_cfg=None)
    depth = "101" if "_s101-" in name else "50"
    return dict(common, variant=f"resnest{depth}", norm_cfg=dict(type="SyncBN", requires_grad=True),
                init_cfg=dict(type="Pretrained", checkpoint=f"resnest://resnest{depth}"))


def test_every_required_config_is_shipped():
    for depth in ("s50", "s101"):
        assert f"resnest_{depth}-d8_deeplabv3_4xb4-160k_ade20k-512x512.py" in CONFIGS
        assert f"resnest_{depth}-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py" in CONFIGS
    assert sum("quickstart" in name for name in CONFIGS) == 2


@pytest.mark.parametrize("name", PAPER)
def test_paper_recipe(name):
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    assert cfg.model.backbone.to_dict() == expected_backbone(name)
    assert cfg.model.pretrained is None
    head = name.split("_")[2]
    assert cfg.model.decode_head.type == {"deeplabv3": "ASPPHead", "deeplabv3plus": "DepthwiseSeparableASPPHead",
                                          "pspnet": "PSPHead"}[head]
    # The adapter under its one import path, never optional.
    assert cfg.custom_imports.imports[0] == "resnest_backbones.mmseg"
    assert cfg.custom_imports.allow_failed_imports is False
    ade = "ade20k" in name
    assert cfg.train_cfg.max_iters == (160000 if ade else 80000)
    assert cfg.model.decode_head.num_classes == (150 if ade else 19)
    assert tuple(cfg.crop_size) == ((512, 512) if ade else (512, 1024))
    assert cfg.val_evaluator.type == "IoUMetric"


@pytest.mark.parametrize("name", QUICK_STARTS)
def test_quick_start(name):
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    assert cfg.model.backbone.to_dict() == expected_backbone(name)
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == len(cfg.metainfo.classes)
    ade = "ade20k" in name
    assert cfg.train_dataloader.dataset.type == ("ADE20KDataset" if ade else "CityscapesDataset")
    # BN statistics over 8 crops of a quarter image each (2 whole images made training and evaluation differ), the
    # pixels of 2 whole images per iteration; evaluated on whole images.
    assert cfg.train_dataloader.batch_size == 8
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.data_root == cfg.data_root  # one place to move the data (RESNEST_*_ROOT)
        assert loader.dataset.metainfo == cfg.metainfo
    height, width = (128, 128) if ade else (128, 256)
    assert cfg.model.data_preprocessor.size == cfg.crop_size == (height // 2, width // 2)
    assert [step.crop_size for step in cfg.train_pipeline if step.type == "RandomCrop"] == [cfg.crop_size]
    assert [tuple(step.scale) for step in cfg.test_pipeline if step.type == "Resize"] == [(width, height)]
    # The adapter under its one import path, never optional.
    assert cfg.custom_imports.imports[0] == "resnest_backbones.mmseg"
    assert cfg.custom_imports.allow_failed_imports is False


@pytest.mark.parametrize("name", CONFIGS)
def test_shared_base_defines_no_key_of_the_framework_base(name):
    """Each config lists one of mmseg's configs (a segmentor, or a dataset for the quick starts) next to a shared
    base of ours, where mmengine refuses a key that two bases define (model, norm_cfg, ...): the paper configs' bases
    share the backbone under a name of its own (resnest_backbone)."""
    framework, shared = base_list(os.path.join(CONFIG_DIR, name))
    ours = set(Config.fromfile(os.path.join(CONFIG_DIR, shared)).keys())
    theirs = set(Config.fromfile(framework_config(framework)).keys())
    assert not ours & theirs, sorted(ours & theirs)
    assert ("resnest_backbone" in ours) == ("quickstart" not in name)


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
