"""Killed runs resume: real trainings (detectron2 through the project's trainer, mmengine through ``mim train``) are
killed with SIGKILL, then restarted with ``--resume``.

Deterministic: fixed seeds, no data-loader workers, the same thread count in every run, and the kill points chosen
by the test-only hooks of ``fault_injection.py`` (a seeded iteration; once inside a checkpoint write).

For each framework, with checkpoints every ``PERIOD`` iterations and ``MAX_ITER`` iterations in all:
- reference: an uninterrupted run (its checkpoint after ``PERIOD`` iterations kept), and an uninterrupted run
  resumed from that checkpoint to the end;
- killed after a seeded iteration between two checkpoints: ``last_checkpoint`` names the last complete checkpoint
  (at most ``PERIOD - 1`` iterations lost), equal to the reference's; ``--resume`` continues from it and ends with
  the weights and iteration of the reference resumed from the same checkpoint;
- killed inside the write of the second checkpoint: no partial file under a checkpoint name, ``last_checkpoint``
  names the first one, and ``--resume`` ends as above.

Tolerance for "the same weights": max absolute difference 1e-6 (the runs are bitwise equal on this machine; the
margin covers CPU kernels that may pick another reduction order on another machine).
"""
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from resnest_backbones.checkpoint import read_checkpoint

SEED = 20261127
MAX_ITER, PERIOD = 7, 3
KILL_AFTER = random.Random(SEED).randint(PERIOD + 1, 2 * PERIOD - 1)  # strictly between two checkpoints
KILL_IN_SAVE = 2 * PERIOD  # the second checkpoint
TOLERANCE = 1e-6
# Same threads in every run (the default depends on the machine's load only through its core count, but be explicit).
ENV = {"OMP_NUM_THREADS": "2", "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}


def _run(command, env=None, killed=False):
    result = subprocess.run([str(c) for c in command], cwd=str(ROOT), capture_output=True, text=True, timeout=900,
                            env={**os.environ, **ENV, **(env or {})})
    output = result.stdout + result.stderr
    if killed:  # mim reports its training process's death in its own words
        assert result.returncode == -signal.SIGKILL or "died with <Signals.SIGKILL: 9>" in output, output[-4000:]
    else:
        assert result.returncode == 0, output[-6000:]
    return output


def _max_difference(a, b) -> float:
    assert a.keys() == b.keys()
    difference = max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)
    print(f"max |difference| over {len(a)} tensors: {difference:.3g}")  # shown with pytest -s
    return difference


# ---------------------------------------------------------------- detectron2 (tools/train_net.py's trainer)
def _d2_command(output, data, *args, tool=ROOT / "tests" / "fault_train_net.py", **changes):
    """The training command (``fault_train_net.py``, or ``tools/train_net.py``); ``changes``: overridden keys, as
    ``MODEL__RESNEST__VARIANT="resnest26"``."""
    options = ["MODEL.MASK_ON", "False", "MODEL.RESNEST.BASE_WIDTH", "16", "MODEL.RESNETS.NORM", "BN",
               "MODEL.FPN.OUT_CHANNELS", "32",
               "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "DATASETS.SYNTHETIC.ROOT", data, "DATASETS.SYNTHETIC.NUM_TRAIN", "8",
               "DATASETS.SYNTHETIC.NUM_VAL", "2", "DATASETS.SYNTHETIC.IMAGE_SIZE", "64", "DATASETS.TEST", "()",
               "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "SOLVER.IMS_PER_BATCH", "2",
               "SOLVER.MAX_ITER", str(MAX_ITER), "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", str(PERIOD),
               "DATALOADER.NUM_WORKERS", "0", "SEED", "7", "TEST.VIS_IMAGES", "0", "OUTPUT_DIR", output]
    options += [str(item) for key, value in changes.items() for item in (key.replace("__", "."), value)]
    return [sys.executable, tool, "--config-file", ROOT / "configs" / "detectron2" /
            "quickstart_mask_rcnn_s14_synthetic.yaml", *args, *options]


def _d2(output, data, *args, env=None, killed=False):
    return _run(_d2_command(output, data, *args), env, killed)


def _d2_name(done: int) -> str:
    return f"model_{done - 1:07d}.pth"  # detectron2 names a checkpoint by its 0-based iteration


@pytest.fixture(scope="module")
def d2_reference(tmp_path_factory):
    """(dataset folder, uninterrupted run's folder, final weights of the run resumed from its first checkpoint)."""
    tmp = tmp_path_factory.mktemp("d2")
    data, full, resumed = tmp / "data", tmp / "full", tmp / "resumed"
    _d2(full, data)
    resumed.mkdir()
    shutil.copy(full / _d2_name(PERIOD), resumed / _d2_name(PERIOD))
    (resumed / "last_checkpoint").write_text(_d2_name(PERIOD))
    log = _d2(resumed, data, "--resume")
    assert f"Starting training from iteration {PERIOD}" in log
    final = read_checkpoint(resumed / "model_final.pth")
    assert final["iteration"] == MAX_ITER - 1
    return data, full, final["model"]


def _check_d2_resume(killed, data, reference_final):
    log = _d2(killed, data, "--resume")
    assert f"Starting training from iteration {PERIOD}" in log  # nothing older, nothing partial
    assert "took over the lock of a run that is no longer running" in log  # the killed run's lock
    assert not list(killed.glob(".*.tmp")), "a killed save's temporary file was left behind"
    final = read_checkpoint(killed / "model_final.pth")
    assert final["iteration"] == MAX_ITER - 1
    assert _max_difference(final["model"], reference_final) <= TOLERANCE


def test_detectron2_killed_at_a_seeded_iteration_resumes(d2_reference, tmp_path):
    data, full, reference_final = d2_reference
    killed = tmp_path / "killed"
    _d2(killed, data, env={"RESNEST_FAULT_KILL_AFTER_ITER": str(KILL_AFTER)}, killed=True)
    assert (killed / "last_checkpoint").read_text() == _d2_name(PERIOD)  # lost KILL_AFTER - PERIOD < PERIOD iters
    saved = read_checkpoint(killed / _d2_name(PERIOD))
    assert saved["iteration"] == PERIOD - 1
    assert _max_difference(saved["model"], read_checkpoint(full / _d2_name(PERIOD))["model"]) <= TOLERANCE
    _check_d2_resume(killed, data, reference_final)


def test_detectron2_killed_inside_a_checkpoint_write_resumes(d2_reference, tmp_path):
    data, _, reference_final = d2_reference
    killed = tmp_path / "killed"
    _d2(killed, data, env={"RESNEST_FAULT_KILL_IN_SAVE_AT": str(KILL_IN_SAVE)}, killed=True)
    assert (killed / "last_checkpoint").read_text() == _d2_name(PERIOD)
    assert not (killed / _d2_name(KILL_IN_SAVE)).exists()  # the partial write stayed under a temporary name
    assert list(killed.glob(".*.tmp")), "the kill did not happen inside a save"
    for path in glob.glob(str(killed / "*.pth")):  # every visible checkpoint is complete
        read_checkpoint(path)
    _check_d2_resume(killed, data, reference_final)


# ---------------------------------------------------------------- detectron2: one run per folder, resume checks
def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_two_detectron2_trainings_started_at_once_into_one_folder(d2_reference, tmp_path):
    """Before: both ran, both exited 0, and the folder held a mix of the two. Now one holds OUTPUT_DIR, the other
    refuses before writing anything, and the folder is exactly what one uninterrupted run leaves."""
    data, full, _ = d2_reference
    shared = tmp_path / "shared"
    command = _d2_command(shared, data, tool=ROOT / "tools" / "train_net.py")
    runs = [subprocess.Popen([str(c) for c in command], cwd=str(ROOT), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV}) for _ in range(2)]
    outputs = [run.communicate(timeout=900) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 1], [out[1][-3000:] for out in outputs]
    refused = outputs[[run.returncode for run in runs].index(1)][1]
    assert "is in use by another run" in refused and "Traceback" not in refused, refused[-3000:]
    final = read_checkpoint(shared / "model_final.pth")
    assert final["iteration"] == MAX_ITER - 1
    assert _max_difference(final["model"], read_checkpoint(full / "model_final.pth")["model"]) <= TOLERANCE
    log = (shared / "log.txt").read_text()
    assert log.count("Starting training from iteration 0") == 1 and log.count("Full config saved to") == 1
    assert not (shared / "run.lock").exists()  # released at the end


@pytest.mark.parametrize("change,fragment", [
    (dict(MODEL__RESNEST__VARIANT="resnest26"), "MODEL.RESNEST.VARIANT 'resnest14' -> 'resnest26'"),
    (dict(SOLVER__OPTIMIZER="SGD"), "saved by another optimizer"),
])
def test_detectron2_resume_with_another_config_is_refused(d2_reference, tmp_path, change, fragment):
    """Before: torch's "parameter group that doesn't match", or KeyError 'momentum' at the first step. Now one
    message that the folder holds a run of another config, what changed, and the folder as it was."""
    data, full, _ = d2_reference
    run = tmp_path / "run"
    shutil.copytree(full, run)
    before = {name: data for name, data in _files(run).items() if name.name != "log.txt"}
    result = subprocess.run([str(c) for c in _d2_command(run, data, "--resume", tool=ROOT / "tools" / "train_net.py",
                                                         **change)],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=900, env={**os.environ, **ENV})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for expected in ("holds a run made with another config", "Changed since that run:", fragment):
        assert expected in result.stderr, result.stderr[-3000:]
    after = _files(run)
    assert all(after.get(name) == data for name, data in before.items()), "a file of the run was changed"


# ---------------------------------------------------------------- mmengine (mim train mmdet)
MM_CONFIG = "tests/configs/mmdet_faults.py"


def _mim(work_dir, data, *args, options=(), env=None, killed=False):
    options = ["train_dataloader.dataset.pipeline.2.scale=(64,64)", *options]  # Resize: 64-pixel images
    return _run([sys.executable, "-m", "mim", "train", "mmdet", MM_CONFIG, "--work-dir", work_dir, *args,
                 "--cfg-options", *options], {"RESNEST_SHAPES_ROOT": f"{data}/", **(env or {})}, killed)


def _weights(path):
    return read_checkpoint(path)["state_dict"]  # restricted unpickling reads the message hub too


@pytest.fixture(scope="module")
def mm_reference(tmp_path_factory):
    """(dataset folder, uninterrupted run's folder, final weights of the run resumed from its first checkpoint)."""
    from resnest_backbones.datasets import make_synthetic_dataset
    tmp = tmp_path_factory.mktemp("mm")
    data = make_synthetic_dataset(str(tmp / "data"), num_train=8, num_val=2, image_size=64)["root"]
    full, resumed = tmp / "full", tmp / "resumed"
    _mim(full, data, options=["default_hooks.checkpoint.max_keep_ckpts=-1"])  # keep every checkpoint
    log = _mim(resumed, data, "--resume", full / f"iter_{PERIOD}.pth")
    assert f"resumed epoch: 0, iter: {PERIOD}" in log
    return data, full, _weights(resumed / f"iter_{MAX_ITER}.pth")


def _last_checkpoint(work_dir) -> str:
    return os.path.basename((work_dir / "last_checkpoint").read_text().strip())


def _check_mm_resume(killed, data, reference_final):
    log = _mim(killed, data, "--resume")
    assert f"resumed epoch: 0, iter: {PERIOD}" in log
    assert "took over the lock of a run that is no longer running" in log  # the killed run's lock
    assert not list(killed.glob(".*.tmp")), "a killed save's temporary file was left behind"
    assert _last_checkpoint(killed) == f"iter_{MAX_ITER}.pth"
    assert _max_difference(_weights(killed / f"iter_{MAX_ITER}.pth"), reference_final) <= TOLERANCE


def test_mmengine_killed_at_a_seeded_iteration_resumes(mm_reference, tmp_path):
    data, full, reference_final = mm_reference
    killed = tmp_path / "killed"
    log = _mim(killed, data, env={"RESNEST_FAULT_KILL_AFTER_ITER": str(KILL_AFTER)}, killed=True)
    assert f"Iter(train) [{KILL_AFTER}/{MAX_ITER}]" in log and f"[{KILL_AFTER + 1}/{MAX_ITER}]" not in log
    assert _last_checkpoint(killed) == f"iter_{PERIOD}.pth"  # lost KILL_AFTER - PERIOD < PERIOD iterations
    assert _max_difference(_weights(killed / f"iter_{PERIOD}.pth"), _weights(full / f"iter_{PERIOD}.pth")) <= TOLERANCE
    _check_mm_resume(killed, data, reference_final)


def test_mmengine_killed_inside_a_checkpoint_write_resumes(mm_reference, tmp_path):
    """The config keeps one checkpoint (max_keep_ckpts=1, as the quick starts): mmengine's own CheckpointHook
    deletes it before writing the next, so this kill would leave nothing to resume from."""
    data, _, reference_final = mm_reference
    killed = tmp_path / "killed"
    _mim(killed, data, env={"RESNEST_FAULT_KILL_IN_SAVE_AT": str(KILL_IN_SAVE)}, killed=True)
    assert _last_checkpoint(killed) == f"iter_{PERIOD}.pth"
    assert not (killed / f"iter_{KILL_IN_SAVE}.pth").exists()  # (mmengine pickles into memory before the file)
    read_checkpoint(killed / f"iter_{PERIOD}.pth")  # complete
    _check_mm_resume(killed, data, reference_final)


def test_mmengine_training_into_a_held_work_dir_is_refused(mm_reference, tmp_path):
    """SafeRunner (the quick-start configs' runner) holds the work dir while it trains: a second training into the
    work dir of a live one refuses before it writes there (no config dump, no checkpoint)."""
    from resnest_backbones.ownership import LOCK_NAME, host_name, process_start_time
    data, full, _ = mm_reference
    held = tmp_path / "held"
    held.mkdir()
    record = {"pid": os.getpid(), "host": host_name(), "started": process_start_time(os.getpid()),
              "token": "t" * 32, "since": "2026-12-01T10:00:00", "command": "mim train mmdet x.py"}
    (held / LOCK_NAME).write_text(json.dumps(record))  # this test's process: running
    result = subprocess.run([sys.executable, "-m", "mim", "train", "mmdet", MM_CONFIG, "--work-dir", held],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=900,
                            env={**os.environ, **ENV, "RESNEST_SHAPES_ROOT": f"{data}/"})
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "--work-dir" in output and "is in use by another run" in output, output[-3000:]
    assert json.loads((held / LOCK_NAME).read_text()) == record
    assert not list(held.glob("*.pth")) and not list(held.glob("*.py")) and not (held / "last_checkpoint").exists()


def test_detectron2_checkpointer_loads_a_mim_train_checkpoint(mm_reference):
    """A real ``mim train`` checkpoint (meta, message-hub HistoryBuffer logs, optimizer, schedulers; our
    ResNeStBackbone under ``backbone.`` beside neck and heads) as detectron2 weights: restricted unpickling, the
    OpenMMLab layout detected, the backbone loaded strictly."""
    import resnest_backbones.detectron2 as rd2
    from resnest_backbones.mmdet import MMDetResNeStBackbone as ResNeStBackbone
    _, full, _ = mm_reference
    checkpoint = full / f"iter_{MAX_ITER}.pth"
    detector = torch.nn.Module()
    detector.backbone = torch.nn.Module()
    detector.backbone.bottom_up = ResNeStBackbone(variant="resnest14", base_channels=16)  # the config's backbone
    rd2.ResNeStCheckpointer(detector).load(str(checkpoint))
    saved = _weights(checkpoint)
    loaded = detector.backbone.bottom_up.state_dict()
    assert loaded and all(torch.equal(value, saved["backbone." + key]) for key, value in loaded.items())
