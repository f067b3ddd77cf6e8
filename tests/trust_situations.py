"""The situations of issue 19 for tests/test_bad_inputs.py: each function makes one (a dataset record that points out
of its folder, an output folder another run holds, a checkpoint of another model or optimizer, a download that
cannot happen) inside a test's temporary folder and calls what the user would call; the ``*_intact`` functions check
what must still hold afterwards.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch

import resnest_backbones as rb
from resnest_backbones.datasets import make_synthetic_dataset
from resnest_backbones.datasets.manifest import MANIFEST
from resnest_backbones.ownership import LOCK_NAME, acquire_run_lock, host_name, process_start_time


# ---------------------------------------------------------------- dataset records
def _victim(tmp: Path) -> None:
    """A user's file and an empty folder of theirs beside the dataset."""
    (tmp / "victim" / "empty").mkdir(parents=True)
    (tmp / "victim" / "precious.txt").write_text("the user's file")


def victim_intact(tmp: Path) -> None:
    assert (tmp / "victim" / "precious.txt").read_text() == "the user's file"
    assert (tmp / "victim" / "empty").is_dir(), "the clean-up climbed out of the dataset folder"


def dataset_with_record_entry(tmp: Path, entry: str) -> Path:
    """A dataset (2 train, 1 val, 32 px) whose record, edited or copied from elsewhere, also lists ``entry``; a link
    ``images/out`` in it points at the user's folder."""
    _victim(tmp)
    root = tmp / "shapes"
    make_synthetic_dataset(str(root), 2, 1, 32)
    (root / "images" / "out").symlink_to(tmp / "victim", target_is_directory=True)
    record = json.loads((root / MANIFEST).read_text())
    record["files"].append(entry)
    (root / MANIFEST).write_text(json.dumps(record))
    return root


def record_points_to(entry_of: Callable[[Path], str]) -> Callable[[Path], None]:
    """``dataset_with_record_entry``, then the maker with other arguments and ``overwrite=True``, which deletes the
    recorded files."""
    def call(tmp: Path) -> None:
        root = dataset_with_record_entry(tmp, entry_of(tmp))
        make_synthetic_dataset(str(root), 3, 1, 32, overwrite=True)
    return call


def root_is_a_file(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("the user's notes")
    return str(tmp / "notes.txt")


def notes_intact(tmp: Path) -> None:
    assert (tmp / "notes.txt").read_text() == "the user's notes"


# ---------------------------------------------------------------- run locks
def write_lock(folder: Path, pid: int, host: str, started=None) -> Path:
    """A run lock as ``ownership`` writes it, for a process of our choosing."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host, "started": started, "token": "t" * 32, "since": "2026-12-01T10:00:00",
              "command": "tools/train_net.py --config-file x.yaml"}
    (folder / LOCK_NAME).write_text(json.dumps(record))
    return folder / LOCK_NAME


def held_by_a_live_run(take: Callable[[str], object] = acquire_run_lock) -> Callable[[Path], object]:
    """``take(tmp / "out")`` when that folder's lock names a process that runs (this test's parent, on this host)."""
    def call(tmp: Path):
        write_lock(tmp / "out", os.getppid(), host_name(), process_start_time(os.getppid()))
        return take(str(tmp / "out"))
    return call


def held_on_another_host(tmp: Path):
    write_lock(tmp / "out", 1, "another-machine." + socket.gethostname())
    return acquire_run_lock(str(tmp / "out"))


def lock_unchanged(tmp: Path) -> None:
    assert json.loads((tmp / "out" / LOCK_NAME).read_text())["token"] == "t" * 32, "the live run's lock was replaced"


def dead_pid() -> int:
    """The pid of a process that has ended (and whose pid no other process took meanwhile)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(child.stdout)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    raise AssertionError(f"pid {pid} was reused at once; run the test again")


# ---------------------------------------------------------------- checkpoints
def detector_checkpoint(tmp: Path, *opts, name: str = "detector.pth", backbone_only: bool = False) -> Path:
    """A detectron2 checkpoint (``{"model": ...}``) of the quick-start detector, or its backbone alone."""
    from detectron2.modeling import build_model
    from test_bad_inputs import _d2_cfg
    model = build_model(_d2_cfg(*opts))
    state = model.backbone.bottom_up.state_dict() if backbone_only else {"model": model.state_dict()}
    torch.save(state, tmp / name)
    return tmp / name


def eval_only_load(weights_of: Callable[[Path], str], *opts) -> Callable[[Path], None]:
    """What ``train_net.py --eval-only`` does with its weights: load, then require every tensor loaded."""
    def call(tmp: Path) -> None:
        from detectron2.modeling import build_model
        from resnest_backbones.apps.detectron2_guards import require_full_weights
        from resnest_backbones.detectron2 import ResNeStCheckpointer
        from test_bad_inputs import _d2_cfg
        checkpointer = ResNeStCheckpointer(build_model(_d2_cfg(*opts)), save_dir=str(tmp / "out"))
        checkpointer.resume_or_load(weights_of(tmp), resume=False)
        require_full_weights(checkpointer, "MODEL.WEIGHTS", str(tmp / "out"))
    return call


def _net(variant: str) -> torch.nn.Module:
    """A ResNeSt with a head: a small stand-in for a detector."""
    net = torch.nn.Module()
    net.backbone, net.head = rb.create_model(variant), torch.nn.Linear(2048, 4)
    return net


def resume_after_change(variant: str, optimizer: type) -> Callable[[Path], None]:
    """A run of resnest14 with AdamW saved its checkpoint in ``out``; this run (``variant``, ``optimizer``) resumes."""
    def call(tmp: Path) -> None:
        from resnest_backbones.detectron2 import ResNeStCheckpointer
        before = _net("resnest14")
        adamw = torch.optim.AdamW(before.parameters())
        before.backbone(torch.rand(2, 3, 32, 32))["res5"].sum().backward()
        adamw.step()
        ResNeStCheckpointer(before, str(tmp / "out"), optimizer=adamw).save("model_0000009")
        after = _net(variant)
        ResNeStCheckpointer(after, str(tmp / "out"), optimizer=optimizer(after.parameters(), lr=0.1)) \
            .resume_or_load("", resume=True)
    return call


def checkpoint_unchanged(tmp: Path) -> None:
    saved = torch.load(tmp / "out" / "model_0000009.pth", weights_only=True)
    assert "exp_avg" in str(saved["optimizer"]["state"]), "the saved optimizer state was changed"
    assert (tmp / "out" / "last_checkpoint").read_text() == "model_0000009.pth"


# ---------------------------------------------------------------- downloads
def unreachable_url(name: str) -> Callable[[Path], None]:
    """``load_pretrained`` of ``http://127.0.0.1:<closed port>/<name>``, with the torch hub cache in ``tmp``."""
    def call(tmp: Path) -> None:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        previous = torch.hub._hub_dir  # as conftest's hub_cache fixture: the directory torch.hub reads
        torch.hub._hub_dir = str(tmp / "hub")
        try:
            rb.load_pretrained(rb.create_model("resnest14"), f"http://127.0.0.1:{port}/{name}", progress=False)
        finally:
            torch.hub._hub_dir = previous
    return call
