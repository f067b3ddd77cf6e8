"""``mim train mmseg`` / ``mim test mmseg`` with the quick-start configs on the synthetic ADE20K- and
Cityscapes-layout data, as users run them, on CPU (IoUMetric; ``mim test`` reproduces the metrics from the
checkpoint in a fresh process; mmseg's tools/test.py ignores runner_type, so this reads the plain-data checkpoint
with mmengine's own Runner), ``--resume`` from a checkpoint in mmengine's own format (SafeRunner's scoped
allow-list), and a 2-process CPU run through mmengine's launcher (torchrun, gloo started by SafeRunner)."""
import math
import pickle

import pytest
import torch

import mmseg  # noqa: F401  required, never skipped
from mim_helpers import mim, read_test_metrics, read_train_metrics, torchrun_train
from resnest_backbones.datasets.synthetic_semantic import make_ade20k_layout, make_cityscapes_layout

ADE = "configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py"
CITYSCAPES = "configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py"
SHORT = ["train_cfg.max_iters=2", "train_cfg.val_interval=2", "default_hooks.checkpoint.interval=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("semantic")
    make_ade20k_layout(str(root / "ade"), num_train=6, num_val=3, image_size=(96, 96))
    make_cityscapes_layout(str(root / "city"), num_train=6, num_val=3, image_size=(96, 192))
    return {"RESNEST_ADE20K_ROOT": str(root / "ade"), "RESNEST_CITYSCAPES_ROOT": str(root / "city")}


@pytest.mark.parametrize("config", [ADE, CITYSCAPES], ids=["ade20k", "cityscapes"])
def test_mim_train_then_mim_test_reproduces_miou(config, data, tmp_path):
    work_dir = str(tmp_path / "train")
    log, seconds = mim("train", "mmseg", config, work_dir, SHORT, data)
    assert "Saving checkpoint at 2 iterations" in log
    # Our backbone's key names (mmseg's own ResNeSt names its deep stem "stem."): the log alone would not show it,
    # "ResNeStBackbone" is in the config that mmengine prints before building anything.
    checkpoint = tmp_path / "train" / "iter_2.pth"
    # Plain data (WeightsOnlyCheckpointHook): torch's default weights-only load reads it, with no allow-list.
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert "backbone.conv1.0.weight" in state and "backbone.layer4.0.conv2.fc2.weight" in state
    trained = read_train_metrics(work_dir, "mIoU")
    assert 0.0 <= trained["mIoU"] <= 100.0 and not math.isnan(trained["aAcc"])
    print(f"\n{config.split('_')[-1]} train ({seconds:.0f} s): {trained}")
    test_log, _ = mim("test", "mmseg", config, str(tmp_path / "test"), [], data,
                      checkpoint=str(tmp_path / "train" / "iter_2.pth"))
    # mmengine loads non-strictly and only logs a mismatch: the trained weights must have loaded, all of them.
    assert "Load checkpoint from" in test_log and "do not match exactly" not in test_log
    assert read_test_metrics(str(tmp_path / "test")) == trained


def test_quick_start_logs_its_expected_time_after_20_iterations(data, tmp_path):
    """The line a user on a slower machine reads at once (ExpectedTimeHook, selected by the quick-start config)."""
    log, _ = mim("train", "mmseg", ADE, str(tmp_path / "train"),
                 ["train_cfg.max_iters=21", "train_cfg.val_interval=21", "default_hooks.checkpoint.interval=21"], data)
    lines = log.splitlines()
    found = [i for i, line in enumerate(lines) if "Expected time: about" in line]
    assert len(found) == 1, log[-3000:]
    assert "Iter(train) [20/21]" in lines[found[0] - 1]  # right after mmengine's progress line of iteration 20
    # 3 validation images (the fixture's dataset), one validation after the last of 21 iterations.
    assert "over iterations 2-20; 21 iterations, 1 evaluation of 3 images" in lines[found[0]]


def test_resume_from_an_mmengine_format_checkpoint(data, tmp_path):
    work_dir = str(tmp_path / "train")
    # Without the hook: mmengine's own format (HistoryBuffer logs), which torch's default load refuses.
    mim("train", "mmseg", ADE, work_dir, SHORT + ["custom_hooks=[]"], data)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "train" / "iter_2.pth", weights_only=True)
    # Every iteration logged (default: every 10th and each pass over the data), to see where the run continues.
    log, _ = mim("train", "mmseg", ADE, work_dir, ["train_cfg.max_iters=3", "train_cfg.val_interval=3",
                                                   "default_hooks.checkpoint.interval=3",
                                                   "default_hooks.logger.interval=1"], data, flags=["--resume"])
    assert "resumed epoch: 0, iter: 2" in log and "Saving checkpoint at 3 iterations" in log
    assert "Iter(train) [3/3]" in log and "Iter(train) [1/3]" not in log  # continued, not restarted
    resumed = torch.load(tmp_path / "train" / "iter_3.pth", weights_only=True)  # saved by the hook: plain data
    assert resumed["meta"]["iter"] == 3


def test_two_process_cpu_training_with_torchrun(data, tmp_path):
    work_dir = str(tmp_path / "dist")
    log, seconds = torchrun_train("mmseg", ADE, work_dir, SHORT, data)
    print(f"\n2-process train ({seconds:.0f} s)")
    # mmengine's environment report: its "GPU number" is the world size, also on CPU.
    assert "Distributed launcher: pytorch" in log and "Distributed training: True" in log and "GPU number: 2" in log
    assert "Saving checkpoint at 2 iterations" in log
    assert 0.0 <= read_train_metrics(work_dir, "mIoU")["mIoU"] <= 100.0
