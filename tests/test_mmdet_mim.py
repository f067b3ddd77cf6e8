"""``mim train mmdet`` / ``mim test mmdet`` with the quick-start configs, as users run them, on CPU: a few
iterations on the synthetic shapes (COCO json, then the LVIS v1 copy), a checkpoint, CocoMetric / LVISMetric, and
``mim test`` reproducing the metrics from that checkpoint in a fresh process. The configs opt in to the stack fixes
(SafeRunner, WeightsOnlyCheckpointHook, NumpyCompatLVISMetric); this test process imports no adapter."""
import math

import pytest
import torch

import mmdet  # noqa: F401  required, never skipped
from mim_helpers import mim, read_test_metrics, read_train_metrics
from resnest_backbones.datasets import make_synthetic_dataset

COCO = "configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py"
LVIS = "configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-lvis-v1.py"
# Small for a CPU test: 2 iterations, 128-pixel images, fewer proposals. The configs stay as shipped otherwise.
SHORT = ["train_cfg.max_iters=2", "train_cfg.val_interval=2", "default_hooks.checkpoint.interval=2",
         "train_dataloader.dataset.pipeline.2.scale=(128,128)",
         "val_dataloader.dataset.pipeline.1.scale=(128,128)", "test_dataloader.dataset.pipeline.1.scale=(128,128)",
         "model.test_cfg.rpn.nms_pre=300", "model.test_cfg.rpn.max_per_img=100", "model.test_cfg.rcnn.max_per_img=20"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_synthetic_dataset(str(root), num_train=8, num_val=4, image_size=128)
    return {"RESNEST_SHAPES_ROOT": str(root) + "/"}


@pytest.mark.parametrize("config,prefix", [(COCO, "coco"), (LVIS, "lvis")])
def test_mim_train_then_mim_test_reproduces_metric(config, prefix, shapes, tmp_path):
    work_dir = str(tmp_path / "train")
    log, seconds = mim("train", "mmdet", config, work_dir, SHORT, shapes)
    assert "Saving checkpoint at 2 iterations" in log
    checkpoint = tmp_path / "train" / "iter_2.pth"
    # Plain data (WeightsOnlyCheckpointHook): torch's default weights-only load reads it, with no allow-list.
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert isinstance(saved["message_hub"]["log_scalars"]["train/loss"], dict)
    state = saved["state_dict"]
    # Our backbone's key names (mmdet's own ResNeSt names its deep stem "stem."): the log alone would not show it,
    # "ResNeStBackbone" is in the config that mmengine prints before building anything.
    assert "backbone.conv1.0.weight" in state and "backbone.layer4.0.conv2.fc2.weight" in state
    trained = read_train_metrics(work_dir, f"{prefix}/bbox_")
    ap = "mAP" if prefix == "coco" else "AP"
    for kind in ("bbox", "segm"):
        value = trained[f"{prefix}/{kind}_{ap}"]
        assert not math.isnan(value) and 0.0 <= value <= 1.0
    print(f"\n{prefix} train ({seconds:.0f} s): {trained}")
    test_log, _ = mim("test", "mmdet", config, str(tmp_path / "test"), SHORT, shapes, checkpoint=str(checkpoint))
    # mmengine loads non-strictly and only logs a mismatch: the trained weights must have loaded, all of them.
    assert "Load checkpoint from" in test_log and "do not match exactly" not in test_log
    assert read_test_metrics(str(tmp_path / "test")) == trained
