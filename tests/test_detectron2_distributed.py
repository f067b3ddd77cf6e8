"""``tools/train_net.py --num-gpus 2`` on a CPU-only machine: two gloo processes train in step (identical weights on
both ranks), the checkpoint resumes, distributed evaluation equals single-process evaluation, and SyncBN / one image
per process are refused with messages naming the keys to change."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

import resnest_backbones.detectron2  # noqa: F401  (fails the module if detectron2 is missing)
from resnest_backbones.apps.detectron2_train import check_images_per_process, load_training_config

TOOL = ROOT / "tools" / "train_net.py"
RANKS = ROOT / "tests" / "detectron2_rank_weights.py"
CONFIG = "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml"
# naiveSyncBN everywhere: BatchNorm statistics are all-reduced, so the BN buffers must match across ranks too.
NAIVE_SYNC = ["MODEL.RESNETS.NORM", "naiveSyncBN", "MODEL.FPN.NORM", "naiveSyncBN",
              "MODEL.ROI_BOX_HEAD.NORM", "naiveSyncBN", "MODEL.ROI_MASK_HEAD.NORM", "naiveSyncBN"]


def _opts(tmp, output, max_iter, test=True):
    return ["MODEL.RESNEST.VARIANT", "resnest14", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.NUM_FC", "1",
            "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "DATASETS.SYNTHETIC.ROOT", str(tmp / "data"),
            "DATASETS.SYNTHETIC.NUM_TRAIN", "8", "DATASETS.SYNTHETIC.NUM_VAL", "4", "DATASETS.SYNTHETIC.IMAGE_SIZE",
            "64", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
            "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "4", "SOLVER.REFERENCE_WORLD_SIZE", "0",
            "SOLVER.MAX_ITER", str(max_iter), "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "2",
            "DATALOADER.NUM_WORKERS", "0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.VIS_IMAGES", "0",
            "OUTPUT_DIR", str(output)] + ([] if test else ["DATASETS.TEST", "()"])


def _run(tmp, script, *args, check=True):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, str(script), "--config-file", CONFIG, "--dist-url", "auto", *args],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=900, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    output = tmp / "out"
    first = _run(tmp, RANKS, "--num-gpus", "2", *_opts(tmp, output, 3, test=False), *NAIVE_SYNC)
    ranks = [_load(output / f"rank{r}.pth") for r in (0, 1)]
    return tmp, output, first.stdout + first.stderr, ranks


def test_both_ranks_end_with_identical_weights(two_ranks):
    _, output, log, ranks = two_ranks
    assert "World size: 2" in log
    assert all(r["wrapped"] == "DistributedDataParallel" for r in ranks)
    first, second = (r["model"] for r in ranks)
    assert first.keys() == second.keys()
    # Parameters (gradients all-reduced by DDP) and BN statistics (naiveSyncBN all-reduces them) are bit-identical,
    # although each rank started from its own seed and saw its own half of every batch.
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, different[:10]
    saved = _load(output / "model_final.pth")
    assert saved["iteration"] == 2
    assert all(torch.equal(saved["model"][k], first[k]) for k in first)
    earlier = _load(output / "model_0000001.pth")["model"]
    assert any(not torch.equal(earlier[k], first[k]) for k in first), "the last step changed no weight"


def test_two_process_checkpoint_resumes(two_ranks):
    tmp, output, _, _ = two_ranks
    resumed = _run(tmp, RANKS, "--num-gpus", "2", "--resume", *_opts(tmp, output, 5, test=False), *NAIVE_SYNC)
    assert "Starting training from iteration 3" in resumed.stdout + resumed.stderr
    ranks = [_load(output / f"rank{r}.pth") for r in (0, 1)]
    assert [r["iteration"] for r in ranks] == [5, 5]
    assert all(torch.equal(ranks[0]["model"][k], ranks[1]["model"][k]) for k in ranks[0]["model"])
    assert _load(output / "model_final.pth")["iteration"] == 4


def test_tool_evaluates_with_two_processes_as_with_one(two_ranks):
    tmp, output, _, _ = two_ranks
    weights = ["MODEL.WEIGHTS", str(output / "model_final.pth")]
    one, two = tmp / "eval1", tmp / "eval2"
    _run(tmp, TOOL, "--eval-only", *_opts(tmp, one, 3), *NAIVE_SYNC, *weights)
    log = _run(tmp, TOOL, "--eval-only", "--num-gpus", "2", *_opts(tmp, two, 3), *NAIVE_SYNC, *weights)
    assert "World size: 2" in log.stdout + log.stderr

    def predictions(folder):
        with open(folder / "inference" / "synthetic_shapes_val" / "coco_instances_results.json") as f:
            return sorted(json.load(f), key=lambda p: (p["image_id"], -p["score"], p["category_id"]))

    ours, reference = predictions(two), predictions(one)
    assert len(ours) == len(reference) > 0
    for a, b in zip(ours, reference):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3) and a["score"] == pytest.approx(b["score"], abs=1e-5)
    metrics, expected = (json.load(open(folder / "eval_results.json")) for folder in (two, one))
    assert metrics.keys() == expected.keys() == {"bbox", "segm"}
    for task in expected:
        assert metrics[task] == pytest.approx(expected[task], abs=1e-6, nan_ok=True)


def test_sync_bn_on_cpu_processes_is_refused_naming_every_key(tmp_path):
    syncbn = ["MODEL.RESNETS.NORM", "SyncBN", "MODEL.FPN.NORM", "SyncBN", "MODEL.ROI_MASK_HEAD.NORM", "SyncBN"]
    result = _run(tmp_path, TOOL, "--num-gpus", "2", *_opts(tmp_path, tmp_path / "out", 2), *syncbn, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]  # one message
    message = next(line for line in result.stderr.splitlines() if line.startswith("train_net.py: error:"))
    assert message.startswith("train_net.py: error: MODEL.RESNETS.NORM, MODEL.FPN.NORM, MODEL.ROI_MASK_HEAD.NORM are "
                              "SyncBN")
    assert ("`MODEL.RESNETS.NORM naiveSyncBN MODEL.FPN.NORM naiveSyncBN MODEL.ROI_MASK_HEAD.NORM naiveSyncBN`"
            in message)
    assert not (tmp_path / "out" / "model_final.pth").exists()


@pytest.mark.parametrize("batch,world,norm,ok", [(2, 1, "BN", True), (1, 1, "BN", False), (2, 2, "BN", False),
                                                 (4, 2, "BN", True), (2, 2, "naiveSyncBN", True),
                                                 (1, 1, "naiveSyncBN", False), (2, 2, "FrozenBN", True)])
def test_one_image_per_process_with_batchnorm_is_refused(batch, world, norm, ok):
    cfg = load_training_config(str(ROOT / CONFIG), ["SOLVER.IMS_PER_BATCH", str(batch), "MODEL.RESNETS.NORM", norm,
                                                    "SOLVER.REFERENCE_WORLD_SIZE", "0"])
    if ok:
        check_images_per_process(cfg, world)
    else:
        with pytest.raises(ValueError, match=f"SOLVER.IMS_PER_BATCH {batch} over {world} process.*at least 2"):
            check_images_per_process(cfg, world)


def test_reference_world_size_keeps_two_images_per_process():
    # The quick start scales with --num-gpus (detectron2's auto-scaling): 2 processes -> batch 4, half the iterations.
    cfg = load_training_config(str(ROOT / CONFIG))
    check_images_per_process(cfg, 2)
    check_images_per_process(cfg, 4)
