"""Every shipped mmdet config loads with mmengine's Config (mmdet:: bases, from the installed package location),
builds its detector with our backbone, and predicts in test mode on CPU. Real mmdet / mmcv ops."""
import glob
import os

import pytest
import torch
from mmdet.registry import MODELS  # required, never skipped
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config

import resnest_backbones
from config_helpers import base_list, framework_config
from resnest_backbones.variants import get_variant

CONFIG_DIR = os.path.dirname(resnest_backbones.config_path(
    "mmdet/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py"))
CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIG_DIR, "*.py")))
PAPER = [name for name in CONFIGS if "quickstart" not in name]
SYNC_BN = dict(type="SyncBN", requires_grad=True)


def paper_backbone(depth: str) -> dict:
    """The backbone every paper config had before the configs were split into a shared base (written out here, not
    read from a config): the paper's recipe with SyncBN and the official ImageNet weights."""
    return dict(type="ResNeStBackbone", variant=f"resnest{depth}", out_indices=(0, 1, 2, 3), frozen_stages=1,
                norm_cfg=SYNC_BN, norm_eval=False,
                init_cfg=dict(type="Pretrained", checkpoint=f"resnest://resnest{depth}"))


def test_every_required_config_is_shipped():
    for detector in ("faster-rcnn", "cascade-rcnn", "mask-rcnn", "cascade-mask-rcnn"):
        for depth in ("s50", "s101"):
            assert any(n.startswith(f"{detector}_{depth}_fpn_syncbn-backbone+head") and n.endswith("_coco.py")
                       for n in CONFIGS), (detector, depth)
    assert any("lvis-v1" in n and "quickstart" not in n for n in CONFIGS)
    assert {"mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py",
            "mask-rcnn_s14_fpn_bn_quickstart_synthetic-lvis-v1.py"} <= set(CONFIGS)


def _boxes_heads(cfg):
    heads = cfg.model.roi_head.bbox_head
    return heads if isinstance(heads, list) else [heads]


@pytest.mark.parametrize("name", PAPER)
def test_paper_recipe(name):
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    depth = "101" if "_s101_" in name else "50"
    assert cfg.model.backbone.to_dict() == paper_backbone(depth)
    # The official weights' ImageNet statistics, on RGB input.
    checkpoint = get_variant(f"resnest{depth}").checkpoint
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.bgr_to_rgb is True
    assert preprocessor.mean == pytest.approx([255 * m for m in checkpoint.mean], abs=1e-3)
    assert preprocessor.std == pytest.approx([255 * s for s in checkpoint.std], abs=1e-3)
    heads = _boxes_heads(cfg)
    assert len(heads) == (3 if name.startswith("cascade") else 1)
    for head in heads:
        assert head.type == "Shared4Conv1FCBBoxHead" and head.norm_cfg == SYNC_BN and head.conv_out_channels == 256
    assert ("mask_head" in cfg.model.roi_head) == ("mask" in name)
    if "mask" in name:
        assert cfg.model.roi_head.mask_head.norm_cfg == SYNC_BN
    pipeline = cfg.train_dataloader.dataset.get("pipeline") or cfg.train_dataloader.dataset.dataset.pipeline
    resize = pipeline[2]
    shorts = [s[1] for s in resize.get("scales", resize.get("scale"))]
    assert min(shorts) == 640 and max(shorts) == 800
    assert cfg.train_cfg.max_epochs == 12
    imports = ["resnest_backbones.mmdet", "resnest_backbones.openmmlab.runner"]
    imports += ["resnest_backbones.openmmlab.lvis"] if "lvis" in name else []
    assert cfg.custom_imports == dict(imports=imports, allow_failed_imports=False)
    # The opt-in stack fixes (weights-only checkpoint loading) and, for LVIS, the numpy-compatible LVISMetric.
    assert cfg.runner_type == "SafeRunner" and cfg.custom_hooks == [dict(type="WeightsOnlyCheckpointHook")]
    assert cfg.test_evaluator.type == ("NumpyCompatLVISMetric" if "lvis" in name else "CocoMetric")


@pytest.mark.parametrize("name", [n for n in PAPER if "_s50_" in n])
def test_shared_base_defines_no_key_of_the_framework_base(name):
    """The shared base sits next to one of mmdet's detector configs in a `_base_` list, where mmengine refuses a key
    that two bases define (model, pipelines, ...): what it shares are names of its own (resnest_*)."""
    framework, shared = base_list(os.path.join(CONFIG_DIR, name))
    ours = set(Config.fromfile(os.path.join(CONFIG_DIR, shared)).keys())
    theirs = set(Config.fromfile(framework_config(framework)).keys())
    assert {"resnest_backbone", "resnest_data_preprocessor"} <= ours and not ours & theirs, sorted(ours & theirs)


@pytest.mark.parametrize("name", CONFIGS)
def test_builds_and_predicts(name):
    register_all_modules()
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    cfg.model.backbone.init_cfg = None  # no download; the weights do not matter for this check
    # Keep a few detections whatever their score, so the mask head runs too; few proposals keep it quick.
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=5)
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    model = MODELS.build(cfg.model).eval()
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128), scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), training=False)
        (result,) = model(**data, mode="predict")
    boxes = result.pred_instances.bboxes
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 0
    if "mask" in name:
        assert result.pred_instances.masks.shape[-2:] == (96, 128)
