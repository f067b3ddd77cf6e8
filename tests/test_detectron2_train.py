"""tools/train_net.py end to end on CPU, as a user runs it (subprocesses, from another directory): a short training
writes checkpoints, metrics and drawn predictions; --resume continues from the saved iteration with the saved weights;
--eval-only reproduces the predictions and metrics of the final evaluation."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

import resnest_backbones.detectron2 as rd2  # noqa: F401  (fails the module if detectron2 is missing)
from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
from resnest_backbones.apps.detectron2_train import Trainer, load_training_config

TOOL = ROOT / "tools" / "train_net.py"


def _opts(tmp, output, max_iter):
    return ["MODEL.RESNEST.VARIANT", "resnest14", "MODEL.FPN.OUT_CHANNELS", "64",
            "DATASETS.SYNTHETIC.ROOT", str(tmp / "data"), "DATASETS.SYNTHETIC.NUM_TRAIN", "4",
            "DATASETS.SYNTHETIC.NUM_VAL", "3", "DATASETS.SYNTHETIC.IMAGE_SIZE", "96",
            "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.MIN_SIZE_TEST", "96",
            "INPUT.MAX_SIZE_TEST", "96", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(max_iter),
            "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "2", "DATALOADER.NUM_WORKERS", "0",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.VIS_IMAGES", "2", "OUTPUT_DIR", str(output)]


def _run(tmp, *args):
    # Run from an unrelated directory with the config given by its shipped name: the tool must find both.
    cwd = tmp / "elsewhere"
    cwd.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, str(TOOL), "--config-file",
                             "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml", *args],
                            cwd=str(cwd), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout + result.stderr


def _predictions(output):
    with open(output / "inference" / "synthetic_shapes_val" / "coco_instances_results.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    output = tmp / "out"
    log = _run(tmp, *_opts(tmp, output, 4))
    return tmp, output, log


def test_training_writes_checkpoints_metrics_and_pictures(trained):
    _, output, log = trained
    assert (output / "model_final.pth").exists() and (output / "model_0000001.pth").exists()
    assert (output / "last_checkpoint").read_text().strip() == "model_final.pth"
    results = json.load(open(output / "eval_results.json"))
    assert {"bbox", "segm"} <= set(results)
    assert len(list((output / "visualizations").glob("*.png"))) == 2
    assert "eta:" in log and "Starting training from iteration 0" in log
    assert "copypaste" in log  # detectron2's own metric printing
    assert len(_predictions(output)) > 0


def test_training_logs_its_expected_time_after_20_iterations(tmp_path):
    """The line a user on a slower machine reads at once (the trainer's ExpectedTimeHook)."""
    output = tmp_path / "out"
    log = _run(tmp_path, *_opts(tmp_path, output, 21), "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.VIS_IMAGES", "0")
    lines = [line for line in log.splitlines() if "Expected time: about" in line]
    assert len(lines) == 1, log[-3000:]
    # The dataset's 3 held-out images, evaluated once after the last of 21 iterations.
    assert "over iterations 2-20; 21 iterations, 1 evaluation of 3 images" in lines[0]


def test_resume_restores_iteration_and_weights(trained):
    tmp, output, _ = trained
    saved = torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)
    cfg = load_training_config(str(ROOT / "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml"),
                      _opts(tmp, output, 6), freeze=False)
    register_synthetic_datasets(cfg)
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert saved["iteration"] == 3 and trainer.start_iter == 4
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved["model"].items())
    restored = trainer.optimizer.state_dict()["state"]
    expected = saved["trainer"]["_trainer"]["optimizer"]["state"]
    assert restored and restored.keys() == expected.keys(), "optimizer state (AdamW moments) must be restored too"
    assert all(torch.equal(restored[i]["exp_avg"], expected[i]["exp_avg"]) for i in expected)
    log = _run(tmp, "--resume", *_opts(tmp, output, 6))
    assert "Starting training from iteration 4" in log
    assert torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 5


def test_eval_only_reproduces_predictions(tmp_path):
    tmp = tmp_path
    first = tmp / "first"
    _run(tmp, *_opts(tmp, first, 2))
    again = tmp / "again"
    _run(tmp, "--eval-only", *_opts(tmp, again, 2), "MODEL.WEIGHTS", str(first / "model_final.pth"))
    assert json.load(open(again / "eval_results.json")) == json.load(open(first / "eval_results.json"))
    ours, theirs = _predictions(again), _predictions(first)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert a["category_id"] == b["category_id"] and a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_lvis_format_evaluates_through_lvis_evaluator(tmp_path):
    output = tmp_path / "lvis"
    log = _run(tmp_path, "--eval-only", "--allow-partial-weights", *_opts(tmp_path, output, 2), "DATASETS.TEST",
               "('synthetic_shapes_lvis_val',)")
    # Logged by detectron2's LVISEvaluator only (COCOEvaluator prepares "results for COCO format"); the dataset name
    # alone would not do, the command line echoed into the log contains it.
    assert "Preparing results in the LVIS format" in log
    results = json.load(open(output / "eval_results.json"))
    assert "APr" in results["bbox"] and "APr" in results["segm"]
    assert os.path.exists(output / "inference" / "synthetic_shapes_lvis_val" / "lvis_instances_results.json")
