"""Every bad input of issue 10 (and of the argument checks before it), as tables: the input, the exception it must
raise, a fragment of the message, and what must still hold afterwards (no code ran, no user file changed, the model
unchanged). Then the tools: one message, exit status 1, no traceback (``--debug`` shows it). Then the cases that
are not errors but used to go wrong silently (the download cache, the files the loaders must accept).

The kill/resume faults are in tests/test_faults.py.
"""
import functools
import hashlib
import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
import pytest
import torch

import resnest_backbones as rb
from conftest import ROOT, serve_directory
from resnest_backbones.checkpoint import (CheckpointMismatchError, NotACheckpointError, UnsafeCheckpointError,
                                          read_checkpoint)
from resnest_backbones.datasets import make_synthetic_dataset
from resnest_backbones.datasets.synthetic_semantic import make_ade20k_layout, make_cityscapes_layout
from resnest_backbones.fast_inference import FastInferenceError, is_fast_inference, to_fast_inference
from resnest_backbones.apps.detectron2_guards import IncompleteWeightsError
from resnest_backbones.datasets.manifest import UnsafeRecordError
from resnest_backbones.detectron2.resume import ResumeMismatchError
from resnest_backbones.ownership import OutputInUseError, acquire_run_lock, host_name, process_start_time
from trust_situations import (checkpoint_unchanged, dataset_with_record_entry, detector_checkpoint, eval_only_load,
                              held_by_a_live_run, held_on_another_host, lock_unchanged, notes_intact,
                              record_points_to, resume_after_change, root_is_a_file, unreachable_url, victim_intact,
                              write_lock)


# ---------------------------------------------------------------- inputs
class _RunsCode:
    """Pickles as a call of os.system: what a malicious checkpoint holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _marker(tmp: Path) -> Path:
    return tmp / "code_ran"


def _no_code_ran(tmp: Path) -> None:
    assert not _marker(tmp).exists(), "unpickling ran the file's code"


def _evil_pth(tmp: Path) -> str:
    path = tmp / "evil.pth"
    torch.save({"state_dict": rb.create_model("resnest14").state_dict(), "meta": _RunsCode(_marker(tmp))}, path)
    return str(path)


def _evil_pkl(tmp: Path) -> str:
    """A detectron2-style .pkl (numpy weights, as Detectron1 / the model zoo) with one code-running object."""
    path = tmp / "evil.pkl"
    state = {k: v.numpy() for k, v in rb.create_model("resnest14").state_dict().items()}
    with open(path, "wb") as handle:
        pickle.dump({"model": state, "__author__": "x", "extra": _RunsCode(_marker(tmp))}, handle, protocol=2)
    return str(path)


# Hand-written pickles that only a crafted file holds.
GADGETS = {
    # getattr(set, 'add'): the real getattr would reach any attribute of an allowed object
    "getattr": b"\x80\x02cbuiltins\ngetattr\ncbuiltins\nset\nX\x03\x00\x00\x00add\x86R.",
    # getattr(HistoryBuffer, '__init__'): only min/max/current/mean of mmengine's HistoryBuffer are allowed
    "history_buffer": b"\x80\x02cbuiltins\ngetattr\ncmmengine.logging.history_buffer\nHistoryBuffer\n"
                      b"X\x08\x00\x00\x00__init__\x86R.",
    # BUILD on an allowed function: would set torch._utils._rebuild_tensor_v2.__defaults__ for the whole process
    "build": b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b.",
}


def _gadget(name: str) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        path = tmp / f"{name}.pkl"
        path.write_bytes(GADGETS[name])
        return str(path)
    return make


def _defaults_intact(tmp: Path) -> None:
    assert torch._utils._rebuild_tensor_v2.__defaults__ == (None,)


def _random_bytes(tmp: Path) -> str:
    path = tmp / "garbage.pth"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return str(path)


def _truncated(tmp: Path) -> str:
    path = tmp / "truncated.pth"
    torch.save(rb.create_model("resnest14").state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return str(path)


def _load(source_of: Callable[[Path], str], **kwargs):
    return lambda tmp: rb.load_pretrained(rb.create_model("resnest14"), source_of(tmp), **kwargs)


def _forward(x):
    return lambda tmp: rb.create_model("resnest14").eval()(x)


def _fused():
    return to_fast_inference(rb.create_model("resnest14").eval())


class _Fixture:
    """A value made inside the call and checked afterwards (the model after a refused call)."""

    def __init__(self, make):
        self.make, self.value = make, None

    def __call__(self):
        self.value = self.make()
        return self.value


_twice, _train = _Fixture(_fused), _Fixture(_fused)


def _eval_and_fused(fixture: _Fixture):
    def check(tmp):
        model = fixture.value
        assert is_fast_inference(model)
        assert not any(module.training for module in model.modules()), "left (partly) in training mode"
    return check


def _user_folder(tmp: Path) -> Path:
    folder = tmp / "mine"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "photo.jpg").write_text("the user's file")
    return folder


def _user_file_intact(tmp: Path) -> None:
    assert (tmp / "mine" / "images" / "photo.jpg").read_text() == "the user's file"


def _dataset_with_user_file(tmp: Path, **changes) -> None:
    """A dataset the maker made, a file the user added to it, then a call with other arguments."""
    root = tmp / "shapes"
    make_synthetic_dataset(str(root), 2, 1, 32)
    (root / "images" / "train" / "notes.txt").write_text("the user's notes")
    make_synthetic_dataset(str(root), **{**dict(num_train=2, num_val=1, image_size=32), **changes})


def _user_notes_intact(tmp: Path) -> None:
    assert (tmp / "shapes" / "images" / "train" / "notes.txt").read_text() == "the user's notes"


def _planned_name_taken(tmp: Path) -> None:
    """A user file under a name the maker plans to write (its own folder, a new image count)."""
    root = tmp / "shapes"
    make_synthetic_dataset(str(root), 2, 1, 32)
    (root / "images" / "val" / "000002.png").write_text("the user's image")
    make_synthetic_dataset(str(root), 2, 2, 32, overwrite=True)


# ---------------------------------------------------------------- detectron2 inputs
def _d2_cfg(*opts):
    from resnest_backbones.apps.detectron2_train import load_training_config
    return load_training_config(str(ROOT / "configs" / "detectron2" / "quickstart_mask_rcnn_s14_synthetic.yaml"),
                                ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.RESNEST.VARIANT", "resnest14",
                                 "MODEL.RESNETS.NORM", "BN", *opts])  # BN: the norm of the checkpoints loaded here


def _d2_build(*opts):
    from detectron2.modeling import build_model
    return lambda tmp: build_model(_d2_cfg(*opts))


def _d2_checkpointer(tmp: Path, model=None):
    import resnest_backbones.detectron2 as rd2
    return rd2.ResNeStCheckpointer(model if model is not None else torch.nn.Linear(1, 1), save_dir=str(tmp / "out"))


def _d2_load(source_of):
    return lambda tmp: _d2_checkpointer(tmp, torch.nn.Sequential(rb.create_model("resnest14"))).load(source_of(tmp))


def _d2_resume(last_checkpoint: bytes, truncated: bool = False):
    def call(tmp):
        out = tmp / "out"
        out.mkdir()
        torch.save({"model": {}, "iteration": 0}, out / "model_0000001.pth")
        if truncated:
            (out / "model_0000009.pth").write_bytes((out / "model_0000001.pth").read_bytes()[:100])
        (out / "last_checkpoint").write_bytes(last_checkpoint)
        _d2_checkpointer(tmp).resume_or_load("", resume=True)
    return call


def _d2_synthetic_root(tmp: Path):
    from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
    register_synthetic_datasets(_d2_cfg("DATASETS.SYNTHETIC.ROOT", str(_user_folder(tmp))))


def _synthetic(root: Path, num_train: str) -> List[str]:
    return ["DATASETS.SYNTHETIC.ROOT", str(root), "DATASETS.SYNTHETIC.NUM_TRAIN", num_train,
            "DATASETS.SYNTHETIC.NUM_VAL", "1", "DATASETS.SYNTHETIC.IMAGE_SIZE", "32"]


def _d2_bad_record(tmp: Path):
    from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
    root = dataset_with_record_entry(tmp, "../victim/precious.txt")
    register_synthetic_datasets(_d2_cfg(*_synthetic(root, "3")))


def _d2_changed_dataset(tmp: Path):
    """The dataset folder was made with 2 training images; the config asks for 3."""
    from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
    make_synthetic_dataset(str(tmp / "shapes"), 2, 1, 32)
    register_synthetic_datasets(_d2_cfg(*_synthetic(tmp / "shapes", "3")))


def _d2_resume_outside(tmp: Path):
    torch.save({"model": {}, "iteration": 0}, tmp / "elsewhere.pth")
    _d2_resume(b"../elsewhere.pth")(tmp)


# ---------------------------------------------------------------- OpenMMLab inputs
def _mm(**arguments):
    def call(tmp):
        from resnest_backbones.mmdet import MMDetResNeStBackbone as ResNeStBackbone
        return ResNeStBackbone(**arguments)
    return call


def _one_training_image(build):
    """A model built by ``build(tmp)``, in training mode, on a batch of one image (split attention's BN fails)."""
    def call(tmp):
        model = build(tmp).train()
        backbone = getattr(model, "backbone", model)
        backbone = getattr(backbone, "bottom_up", backbone)
        return backbone(torch.rand(1, 3, 64, 64))
    return call


def _mm_init(source_of):
    def call(tmp):
        from resnest_backbones.mmdet import MMDetResNeStBackbone as ResNeStBackbone
        ResNeStBackbone(variant="resnest14", init_cfg=dict(type="Pretrained", checkpoint=source_of(tmp))).init_weights()
    return call


def _mm_held_work_dir(tmp: Path):
    from resnest_backbones.openmmlab.runner import hold_work_dir
    return held_by_a_live_run(hold_work_dir)(tmp)


# ---------------------------------------------------------------- safetensors
def _evil_safetensors(tmp: Path) -> str:
    """A pickle that runs code, named like a safetensors file."""
    path = tmp / "evil.safetensors"
    path.write_bytes(pickle.dumps(_RunsCode(_marker(tmp))))
    return str(path)


def _truncated_safetensors(tmp: Path) -> str:
    from safetensors.torch import save_file
    path = tmp / "truncated.safetensors"
    save_file(rb.create_model("resnest14").state_dict(), str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return str(path)


def torchvision_resnet50():
    import torchvision
    return torchvision.models.resnet50()


# ---------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    call: Callable[[Path], Any]
    error: type
    fragment: str
    after: Optional[Callable[[Path], None]] = None
    absent: str = "\0"  # a text the message must not contain


CASES: List[Case] = [
    # architecture arguments (core): name the argument and the allowed values
    Case("radix=-1", lambda t: rb.create_model("resnest14", radix=-1), ValueError, "radix must be an integer >= 0"),
    Case("cardinality=0", lambda t: rb.create_model("resnest14", cardinality=0), ValueError,
         "cardinality must be an integer >= 1"),
    Case("cardinality=-1", lambda t: rb.create_model("resnest14", cardinality=-1), ValueError,
         "cardinality must be an integer >= 1"),
    Case("base_width=0", lambda t: rb.create_model("resnest14", base_width=0), ValueError,
         "base_width must be an integer >= 1"),
    Case("stem_width=0", lambda t: rb.create_model("resnest14", stem_width=0), ValueError,
         "stem_width must be an integer >= 1"),
    Case("reduction_factor=0", lambda t: rb.create_model("resnest14", reduction_factor=0), ValueError,
         "reduction_factor must be an integer >= 1"),
    Case("in_channels=0", lambda t: rb.create_model("resnest14", in_channels=0), ValueError,
         "in_channels must be an integer >= 1"),
    Case("layers of 3", lambda t: rb.ResNeSt([3, 4, 6]), ValueError, "layers must have 4 entries"),
    Case("layers with 0", lambda t: rb.ResNeSt([3, 0, 6, 3]), ValueError, "layers[1] must be an integer >= 1"),
    Case("out_features string", lambda t: rb.create_model("resnest14", out_features="res5"), ValueError,
         "got the string 'res5'; write ['res5']"),
    Case("out_features unknown", lambda t: rb.create_model("resnest14", out_features=["res6"]), ValueError,
         "non-empty subset of ['res2', 'res3', 'res4', 'res5']"),
    Case("frozen_stages=5", lambda t: rb.create_model("resnest14", frozen_stages=5), ValueError,
         "frozen_stages must be an integer in [-1, 4]"),
    # yes/no and numbers: real booleans only, probabilities in [0, 1), types named (one validation function)
    Case("avd='False'", lambda t: rb.create_model("resnest14", avd="False"), ValueError,
         "avd must be True or False, got the string 'False' (a yaml or command-line value"),
    Case("deep_stem='no'", lambda t: rb.create_model("resnest14", deep_stem="no"), ValueError,
         "deep_stem must be True or False"),
    Case("norm_eval=1", lambda t: rb.create_model("resnest14", norm_eval=1), ValueError,
         "norm_eval must be True or False, got 1 (int)"),
    Case("drop_block_prob=-0.1", lambda t: rb.create_model("resnest14", drop_block_prob=-0.1), ValueError,
         "drop_block_prob must be a probability in [0, 1)"),
    Case("drop_block_prob=1.5", lambda t: rb.create_model("resnest14", drop_block_prob=1.5), ValueError,
         "drop_block_prob must be a probability in [0, 1)"),
    Case("final_drop=2.0", lambda t: rb.create_model("resnest14", num_classes=3, final_drop=2.0), ValueError,
         "final_drop must be a probability in [0, 1)"),
    Case("layers=2", lambda t: rb.create_model("resnest14", layers=2), ValueError,
         "layers must be a list of integers, e.g. [3, 4, 6, 3]"),
    Case("radix='2'", lambda t: rb.create_model("resnest14", radix="2"), ValueError,
         "radix must be an integer >= 0, got the string '2'; write radix=2 without quotes"),
    Case("radixx=2", lambda t: rb.create_model("resnest14", radixx=2), TypeError, "'radixx' (did you mean 'radix'?)"),
    # inputs
    Case("batch of 0 images", _forward(torch.rand(0, 3, 64, 64)), ValueError, "empty batch (0 images)"),
    Case("float64 input, float32 model", _forward(torch.rand(1, 3, 64, 64, dtype=torch.float64)), TypeError,
         "input dtype torch.float64 differs from the model's torch.float32"),
    Case("3-d input", _forward(torch.rand(3, 64, 64)), ValueError, "expects a (N, C, H, W) batch"),
    Case("NHWC input", _forward(torch.rand(1, 64, 64, 3)), ValueError,
         "it looks like (N, H, W, C): use x.permute(0, 3, 1, 2)"),
    Case("list input", _forward([[1.0]]), TypeError, "expects a torch.Tensor batch (N, C, H, W), got list"),
    Case("numpy input", _forward(np.zeros((1, 3, 64, 64), np.float32)), TypeError, "got ndarray: convert it"),
    Case("training batch of 1", _one_training_image(lambda t: rb.create_model("resnest14")), ValueError,
         "split attention's attention BatchNorm (conv2.bn1 of each block, on a 1x1 map) needs at least 2 values per "
         "channel in training. Fix: give each process a batch of at least 2 images; or normalise across processes "
         "(norm_layer='SyncBN'); or keep the BatchNorm statistics fixed (norm_eval=True"),
    # fast inference
    Case("fuse a fused model", lambda t: to_fast_inference(_twice()), FastInferenceError, "already fused",
         _eval_and_fused(_twice)),
    Case("train() a fused model", lambda t: _train().train(), FastInferenceError, "inference-only",
         _eval_and_fused(_train)),
    Case("fuse a training model", lambda t: to_fast_inference(rb.create_model("resnest14").train()),
         FastInferenceError, "call model.eval() first"),
    # checkpoint files: no code runs, garbage is "not a checkpoint", unsafe needs the opt-in
    Case("code in a .pth", _load(_evil_pth), UnsafeCheckpointError, "needs unsafe unpickling: it stores "
         "'posix.system'", _no_code_ran),
    Case("code in a .pkl (load_pretrained)", _load(_evil_pkl), UnsafeCheckpointError, "allow_unsafe_pickle=True",
         _no_code_ran),
    Case("getattr gadget", _load(_gadget("getattr")), UnsafeCheckpointError, "getattr(set, 'add')"),
    Case("HistoryBuffer getattr gadget", _load(_gadget("history_buffer")), UnsafeCheckpointError,
         "getattr(HistoryBuffer, '__init__')"),
    Case("BUILD gadget", _load(_gadget("build")), UnsafeCheckpointError, "as the target of BUILD", _defaults_intact),
    Case("random bytes", _load(_random_bytes), NotACheckpointError, "is truncated or not a checkpoint"),
    Case("truncated file", _load(_truncated), NotACheckpointError, "is truncated or not a checkpoint"),
    Case("missing file", _load(lambda t: str(t / "nope.pth")), FileNotFoundError, "Checkpoint file not found"),
    Case("variant name typo", _load(lambda t: "resnest5O"), FileNotFoundError, "did you mean 'resnest50'?"),
    Case("wrong architecture", lambda t: rb.load_pretrained(rb.create_model("resnest26"),
                                                            rb.create_model("resnest14").state_dict()),
         CheckpointMismatchError, "missing keys"),
    Case("not a ResNeSt layout",
         lambda t: rb.load_pretrained(rb.create_model("resnest14"), {"x.weight": torch.ones(1)}), ValueError,
         "Unrecognised checkpoint layout"),
    # dataset makers: never delete or overwrite a file they did not make
    Case("instances maker, user folder", lambda t: make_synthetic_dataset(str(_user_folder(t)), 2, 1, 32),
         FileExistsError, "nothing in it is deleted or overwritten", _user_file_intact),
    Case("instances maker, user folder, overwrite",
         lambda t: make_synthetic_dataset(str(_user_folder(t)), 2, 1, 32, overwrite=True), FileExistsError,
         "has no record (synthetic_meta.json", _user_file_intact),
    Case("ADE20K maker, user folder", lambda t: make_ade20k_layout(str(_user_folder(t)), 2, 1, (32, 32)),
         FileExistsError, "nothing in it is deleted or overwritten", _user_file_intact),
    Case("Cityscapes maker, user folder", lambda t: make_cityscapes_layout(str(_user_folder(t)), 2, 1, (32, 64)),
         FileExistsError, "nothing in it is deleted or overwritten", _user_file_intact),
    Case("other arguments without overwrite", functools.partial(_dataset_with_user_file, num_train=3),
         FileExistsError, "num_train 2 -> 3", _user_notes_intact),
    Case("a planned file is the user's", _planned_name_taken, FileExistsError, "did not make (e.g. images/val/"),
    Case("maker argument", lambda t: make_synthetic_dataset(str(t / "x"), 2, 1, 0), ValueError,
         "image_size must be an integer in [16, 4096]"),
    # detectron2: config keys named, MODEL.WEIGHTS read safely, last_checkpoint explained
    Case("MODEL.RESNEST.RADIX -1", _d2_build("MODEL.RESNEST.RADIX", "-1"), ValueError,
         "MODEL.RESNEST.RADIX: radix must be an integer >= 0"),
    Case("MODEL.RESNEST.CARDINALITY 0", _d2_build("MODEL.RESNEST.CARDINALITY", "0"), ValueError,
         "MODEL.RESNEST.CARDINALITY: cardinality must be"),
    Case("MODEL.RESNEST.BASE_WIDTH 0", _d2_build("MODEL.RESNEST.BASE_WIDTH", "0"), ValueError,
         "MODEL.RESNEST.BASE_WIDTH: base_width must be"),
    Case("MODEL.RESNEST.STEM_WIDTH 0", _d2_build("MODEL.RESNEST.STEM_WIDTH", "0"), ValueError,
         "MODEL.RESNEST.STEM_WIDTH"),
    Case("MODEL.RESNEST.LAYERS with 0", _d2_build("MODEL.RESNEST.LAYERS", "[1, 1, 0, 1]"), ValueError,
         "MODEL.RESNEST.LAYERS: layers[2] must be an integer >= 1"),
    Case("MODEL.RESNETS.OUT_FEATURES", _d2_build("MODEL.RESNETS.OUT_FEATURES", "['res6']"), ValueError,
         "MODEL.RESNETS.OUT_FEATURES"),
    Case("MODEL.RESNEST.AVD 'False' (a string)", _d2_build("MODEL.RESNEST.AVD", "'False'"), ValueError,
         "MODEL.RESNEST.AVD: avd must be True or False, got the string 'False'"),
    Case("MODEL.RESNEST.DROP_BLOCK_PROB -0.5", _d2_build("MODEL.RESNEST.DROP_BLOCK_PROB", "-0.5"), ValueError,
         "MODEL.RESNEST.DROP_BLOCK_PROB: drop_block_prob must be a probability in [0, 1)"),
    Case("MODEL.RESNEST.LAYERS 2", _d2_build("MODEL.RESNEST.LAYERS", "2"), ValueError,
         "MODEL.RESNEST.LAYERS: layers must be a list of integers"),
    Case("MODEL.BACKBONE.FREEZE_AT 7", _d2_build("MODEL.BACKBONE.FREEZE_AT", "7"), ValueError,
         "MODEL.BACKBONE.FREEZE_AT must be an integer in [0, 5]"),
    Case("detectron2 training batch of 1", _one_training_image(_d2_build("MODEL.RESNETS.NORM", "BN")), ValueError,
         "Fix: SOLVER.IMS_PER_BATCH >= 2 images per process; or MODEL.RESNETS.NORM 'SyncBN'"),
    Case("code in a .pkl (MODEL.WEIGHTS)", _d2_load(_evil_pkl), UnsafeCheckpointError,
         "needs unsafe unpickling", _no_code_ran),
    Case("random bytes (MODEL.WEIGHTS)", _d2_load(_random_bytes), NotACheckpointError, "not a checkpoint"),
    Case("last_checkpoint names a missing file", _d2_resume(b"model_0000009.pth"), FileNotFoundError,
         "last_checkpoint names 'model_0000009.pth', which is not a file in"),
    Case("last_checkpoint lists what exists", _d2_resume(b"model_0000009.pth"), FileNotFoundError,
         "Checkpoints in "),
    Case("last_checkpoint is garbage", _d2_resume(b"\x00\xff\x13garbage"), FileNotFoundError,
         "last_checkpoint names '\\x00"),
    Case("last_checkpoint names a truncated file", _d2_resume(b"model_0000009.pth", truncated=True),
         NotACheckpointError, "names 'model_0000009.pth', which cannot be read"),
    Case("DATASETS.SYNTHETIC.ROOT is a user folder", _d2_synthetic_root, FileExistsError,
         "DATASETS.SYNTHETIC.ROOT", _user_file_intact),
    # OpenMMLab: the adapter validates as mmdet/mmseg do (its own messages); checkpoints go through the core
    Case("mmdet depth=18", _mm(depth=18), KeyError, "depth 18"),
    Case("mmdet out_indices=(4,)", _mm(depth=50, out_indices=(4,)), ValueError, "out_indices (4,)"),
    Case("mmdet norm_cfg type", _mm(depth=50, norm_cfg=dict(type="XX")), ValueError, "norm_cfg type 'XX'"),
    Case("mmdet radix=-1", _mm(depth=50, radix=-1), ValueError, "radix must be an integer >= 0"),
    Case("mmdet misspelt argument", _mm(depth=50, radx=2), TypeError, "did you mean 'radix'?"),
    Case("mmdet style", _mm(depth=50, style="tensorflow"), ValueError, "style"),
    Case("mmdet depth='50'", _mm(depth="50"), ValueError, "depth must be an integer such as 50, got '50' (str): "
         "write depth=50 without quotes"),
    Case("mmdet out_indices=3", _mm(depth=50, out_indices=3), ValueError,
         "out_indices must be a sequence of stage indices, e.g. (0, 1, 2, 3) or (3,)"),
    Case("mmdet with_cp='yes'", _mm(depth=50, with_cp="yes"), ValueError, "with_cp must be True or False"),
    Case("mmdet drop_block_prob=-0.1", _mm(depth=50, drop_block_prob=-0.1), ValueError,
         "drop_block_prob must be a probability in [0, 1)"),
    Case("mmdet fast_inference='yes'", _mm(depth=50, fast_inference="yes"), ValueError,
         "fast_inference must be True or False"),
    Case("mmdet training batch of 1", _one_training_image(_mm(depth=14, norm_eval=False)), ValueError,
         "Fix: train_dataloader.batch_size >= 2 images per process; or norm_cfg=dict(type='SyncBN')"),
    Case("mmdet init_cfg with code", _mm_init(_evil_pth), UnsafeCheckpointError, "needs unsafe unpickling",
         _no_code_ran),
    Case("mmdet init_cfg random bytes", _mm_init(_random_bytes), NotACheckpointError, "not a checkpoint"),
    # ---- issue 19 (1): a dataset record is untrusted input: its paths stay inside the folder, clean-up never
    # climbs out. Before: the user's file was deleted and emptied folders above the dataset removed.
    Case("record: a ../ path", record_points_to(lambda t: "../victim/precious.txt"), UnsafeRecordError,
         "lists '../victim/precious.txt', which is not a file inside", victim_intact),
    Case("record: an absolute path", record_points_to(lambda t: str(t / "victim" / "precious.txt")),
         UnsafeRecordError, "victim/precious.txt', which is not a file inside", victim_intact),
    Case("record: a path through a link out", record_points_to(lambda t: "images/out/precious.txt"),
         UnsafeRecordError, "lists 'images/out/precious.txt'", victim_intact),
    Case("record: clean-up would climb out", record_points_to(lambda t: "../victim/empty/gone.png"),
         UnsafeRecordError, "lists '../victim/empty/gone.png'", victim_intact),
    Case("record: through DATASETS.SYNTHETIC.ROOT", _d2_bad_record, UnsafeRecordError, "DATASETS.SYNTHETIC.ROOT: ",
         victim_intact),
    Case("dataset root is a file", lambda t: make_synthetic_dataset(root_is_a_file(t), 2, 1, 32), NotADirectoryError,
         "notes.txt is a file, not a folder", notes_intact),
    Case("last_checkpoint names a file outside OUTPUT_DIR", _d2_resume_outside, FileNotFoundError,
         "names '../elsewhere.pth', which is not a file in"),
    # (2) one live run per output folder. Before: two runs wrote into one folder and both exited 0.
    Case("OUTPUT_DIR held by a live run", held_by_a_live_run(), OutputInUseError,
         "is in use by another run (pid", lock_unchanged),
    Case("OUTPUT_DIR held by a run on another host", held_on_another_host, OutputInUseError,
         "if that run has ended (it ran on another machine), delete", lock_unchanged),
    Case("OUTPUT_DIR is a file", lambda t: acquire_run_lock(root_is_a_file(t), "OUTPUT_DIR"), NotADirectoryError,
         "OUTPUT_DIR " , notes_intact),
    Case("mmengine --work-dir held by a live run", _mm_held_work_dir, OutputInUseError,
         "--work-dir ", lock_unchanged),
    # (3) --eval-only evaluates trained weights only. Before: AP of random blocks or heads, exit status 0.
    Case("--eval-only: another variant's detector", eval_only_load(lambda t: str(detector_checkpoint(t)),
                                                                   "MODEL.RESNEST.VARIANT", "resnest26"),
         IncompleteWeightsError, "at their random initialisation: backbone.bottom_up.layer1 ("),
    Case("--eval-only: backbone-only weights", eval_only_load(lambda t: str(detector_checkpoint(t,
                                                                                                backbone_only=True))),
         IncompleteWeightsError, "(it holds the backbone only): backbone.fpn_lateral ("),
    Case("--eval-only: no weights", eval_only_load(lambda t: ""), IncompleteWeightsError,
         "none were loaded (MODEL.WEIGHTS is empty"),
    # (8) an offline download names the cache path to fill by hand. Before: "download it and pass its path".
    Case("download fails: hash-named file", unreachable_url("w-0123abcd.pth"), RuntimeError,
         "hub/checkpoints/w-0123abcd.pth (its SHA-256 must start with 0123abcd"),
    Case("download fails: plain file name", unreachable_url("w.pth"), RuntimeError,
         "hub/checkpoints/w.pth.source"),
    # (9) safetensors are never unpickled.
    Case("a code pickle named .safetensors", _load(_evil_safetensors), NotACheckpointError,
         "is truncated or not a checkpoint", _no_code_ran),
    Case("truncated .safetensors", _load(_truncated_safetensors), NotACheckpointError,
         "is truncated or not a checkpoint"),
    # (10) a folder where a file belongs. Before: "not found".
    Case("a folder as the checkpoint", _load(lambda t: str(_official_file(t).parent)), IsADirectoryError,
         "is a folder, not a checkpoint file: give the path of the file itself; checkpoints in it: resnest14.pth"),
    Case("a folder as MODEL.WEIGHTS", _d2_load(lambda t: str(t)), IsADirectoryError,
         "MODEL.WEIGHTS " ),
    # (12) mismatches say what the checkpoint is. Before: "check the variant" / "(official format)".
    Case("1000-class checkpoint into num_classes=10",
         lambda t: rb.load_pretrained(rb.create_model("resnest14", num_classes=10),
                                      rb.create_model("resnest14", num_classes=1000).state_dict()),
         CheckpointMismatchError, "checkpoint's has 1000 classes, the model's num_classes=10"),
    Case("torchvision ResNet-50 weights",
         lambda t: rb.load_pretrained(rb.create_model("resnest50"), torchvision_resnet50().state_dict()),
         CheckpointMismatchError, "without split-attention weights: a plain ResNet such as torchvision's"),
    Case("fused (to_fast_inference) weights into a plain model",
         lambda t: rb.load_pretrained(rb.create_model("resnest14"), _fused().state_dict()),
         CheckpointMismatchError, "from a model fused by to_fast_inference"),
    Case("GroupNorm over 16 channels", lambda t: rb.create_model("resnest14", norm_layer="GN", base_width=16),
         ValueError, "norm_layer 'GN' splits each norm's channels into 32 groups, but this network has a norm over "
         "16 channels"),
    Case("detectron2 quick start (GN) with MODEL.RESNEST.BASE_WIDTH 16",
         _d2_build("MODEL.RESNETS.NORM", "GN", "MODEL.RESNEST.BASE_WIDTH", "16"), ValueError,
         "or another norm (detectron2: MODEL.RESNETS.NORM"),
    Case("BatchNorm weights into a GroupNorm model",
         lambda t: rb.load_pretrained(rb.create_model("resnest14", norm_layer="GN"),
                                      rb.create_model("resnest14").state_dict()),
         CheckpointMismatchError, "trained with BatchNorm (running_mean / running_var) and this model's norms "
         "(GroupNorm) keep none: build the model with norm_layer 'BN'"),
    # (13) --resume after a config change. Before: torch's parameter-group error, or KeyError 'momentum' later.
    Case("--resume after a variant change", resume_after_change("resnest26", torch.optim.AdamW), ResumeMismatchError,
         "holds a run made with another config (it leaves", checkpoint_unchanged),
    Case("--resume after an optimizer change", resume_after_change("resnest14", torch.optim.SGD),
         ResumeMismatchError, "saved by another optimizer", checkpoint_unchanged),
    # (14) the dataset-changed message in train_net.py's terms. Before: it suggested --overwrite, which train_net.py
    # does not have.
    Case("synthetic dataset changed (detectron2)", _d2_changed_dataset, FileExistsError,
         "DATASETS.SYNTHETIC.NUM_TRAIN 3 (that folder has 2)", absent="overwrite=True"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_clearly(case: Case, tmp_path):
    with pytest.raises(case.error) as raised:
        case.call(tmp_path)
    assert case.fragment in str(raised.value) and case.absent not in str(raised.value), str(raised.value)
    if case.error is NotACheckpointError:  # garbage must not send the user towards unsafe loading
        assert "allow_unsafe_pickle" not in str(raised.value)
    if case.after is not None:
        case.after(tmp_path)


# ---------------------------------------------------------------- the tools
def _tool(name: str, *args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *map(str, args)], capture_output=True,
                          text=True, cwd=str(cwd or ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def _official_file(tmp: Path, variant="resnest14") -> Path:
    path = tmp / f"{variant}.pth"
    if not path.exists():
        torch.save(rb.create_model(variant).state_dict(), path)
    return path


def _symlink_to_input(tmp: Path) -> List:
    source = _official_file(tmp)
    (tmp / "link.pth").symlink_to(source)
    return [source, tmp / "link.pth", "--to", "openmmlab"]


D2_QUICKSTART = "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml"
D2_LAZY_QUICKSTART = "configs/detectron2/lazy/quickstart_mask_rcnn_s14_synthetic.py"


def _existing(tmp: Path, name: str) -> Path:
    """A user's file where a tool would write."""
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("the user's file")
    return path


def _malformed_yaml(tmp: Path) -> Path:
    path = tmp / "bad.yaml"
    path.write_text("MODEL:\n  RESNEST:\n VARIANT: [resnest14\n")
    return path


def _d2_args(tmp: Path, flags=(), opts=()) -> List:
    """train_net.py on the quick-start config with a tiny dataset in ``tmp``; ``flags`` before the overrides."""
    return ["--config-file", D2_QUICKSTART, *flags, "OUTPUT_DIR", tmp / "out", "DATASETS.SYNTHETIC.ROOT",
            tmp / "data", "DATASETS.SYNTHETIC.NUM_TRAIN", "2", "DATASETS.SYNTHETIC.NUM_VAL", "1",
            "DATASETS.SYNTHETIC.IMAGE_SIZE", "32", *opts]


def _live_lock(tmp: Path) -> Path:
    """An output folder whose run lock names a live process (this test's parent)."""
    write_lock(tmp / "held", os.getppid(), host_name(), process_start_time(os.getppid()))
    return tmp / "held"


@dataclass
class ToolCase:
    id: str
    tool: str
    args: Callable[[Path], List]
    fragment: str
    cwd_is_tmp: bool = False


TOOL_CASES = [
    ToolCase("convert: missing source", "convert_weights.py", lambda t: [t / "nope.pth", t / "o.pth", "--to",
                                                                         "official"], "Checkpoint file not found"),
    ToolCase("convert: output is the input", "convert_weights.py",
             lambda t: [_official_file(t), _official_file(t), "--to", "openmmlab"], "is the input file"),
    ToolCase("convert: output is the input (relative)", "convert_weights.py",
             lambda t: [_official_file(t), "./" + _official_file(t).name, "--to", "openmmlab"], "is the input file",
             cwd_is_tmp=True),
    ToolCase("convert: output is the input (symlink)", "convert_weights.py", _symlink_to_input, "is the input file"),
    ToolCase("convert: wrong --variant", "convert_weights.py",
             lambda t: [_official_file(t), t / "o.pth", "--to", "openmmlab", "--variant", "resnest50"],
             "resnest14.pth does not fit --variant resnest50"),
    ToolCase("convert: code in the source", "convert_weights.py",
             lambda t: [_evil_pth(t), t / "o.pth", "--to", "official"], "needs unsafe unpickling"),
    ToolCase("export: --out is --weights", "export.py",
             lambda t: ["resnest14", "--format", "torchscript", "--out", _official_file(t), "--weights",
                        _official_file(t)], "is the input file"),
    ToolCase("export: negative --num-classes", "export.py",
             lambda t: ["resnest14", "--format", "torchscript", "--out", t / "x.pt", "--num-classes", "-1"],
             "num_classes must be an integer >= 0"),
    ToolCase("make_synthetic_dataset: user folder", "make_synthetic_dataset.py",
             lambda t: [_user_folder(t), "--num-train", "1", "--num-val", "1", "--image-size", "32"],
             "nothing in it is deleted or overwritten"),
    ToolCase("make_synthetic_segmentation: user folder", "make_synthetic_segmentation.py",
             lambda t: ["--layout", "ade20k", "--root", _user_folder(t), "--num-train", "1", "--num-val", "1"],
             "nothing in it is deleted or overwritten"),
    # ---- issue 19 (6): an existing file is never replaced unasked (the check of unchanged inputs covers it).
    # Before: replaced.
    ToolCase("convert: output exists", "convert_weights.py",
             lambda t: [_official_file(t), _existing(t, "mine.pth"), "--to", "openmmlab"],
             "mine.pth already exists; pass --overwrite to replace it"),
    ToolCase("export: --out exists", "export.py",
             lambda t: ["resnest14", "--format", "torchscript", "--out", _existing(t, "notes.txt")],
             "notes.txt already exists; pass --overwrite"),
    ToolCase("export_detectron2: --output holds a model.ts", "export_detectron2.py",
             lambda t: ["--config-file", D2_QUICKSTART, "--export-method", "tracing", "--output",
                        _existing(t, "exported/model.ts").parent], "model.ts already exists; pass --overwrite"),
    # (10) a folder where a file belongs. Before: an error about a temporary file / inline_container.cc.
    ToolCase("convert: output is a folder", "convert_weights.py", lambda t: [_official_file(t), t, "--to", "official"],
             "is a folder; give the path of a file"),
    ToolCase("export: --out is a folder", "export.py", lambda t: ["resnest14", "--format", "onnx", "--out", t],
             "is a folder; give the path of a file"),
    # (14) sizes and flags. Before: a 46-line error and 361 lines of graph; an attempt to allocate 224 GiB.
    ToolCase("export: --size 0", "export.py", lambda t: ["resnest14", "--format", "onnx", "--out", t / "x.onnx",
                                                         "--size", "0"], "--size 0 is out of range"),
    ToolCase("export: --opset 5", "export.py", lambda t: ["resnest14", "--format", "onnx", "--out", t / "x.onnx",
                                                          "--opset", "5"], "--opset 5 is out of range"),
    ToolCase("make_synthetic_dataset: --image-size 100000", "make_synthetic_dataset.py",
             lambda t: [t / "d", "--image-size", "100000"], "image_size must be an integer in [16, 4096]"),
    ToolCase("make_synthetic_segmentation: --image-size 100000", "make_synthetic_segmentation.py",
             lambda t: ["--layout", "ade20k", "--root", t / "d", "--image-size", "100000", "100000"],
             "each an integer in [32, 4096]"),
    # (7) train_net.py, lazyconfig_train_net.py and export_detectron2.py: one message. Before: a traceback.
    ToolCase("train_net: missing --config-file", "train_net.py", lambda t: ["--config-file", t / "nope.yaml"],
             "is neither a file nor a shipped config"),
    ToolCase("train_net: malformed yaml", "train_net.py", lambda t: ["--config-file", _malformed_yaml(t)],
             "is not valid YAML at line 3, column 2"),
    ToolCase("train_net: misspelt key", "train_net.py", lambda t: _d2_args(t, opts=["MODEL.RESNEST.RADX", "2"]),
             "Did you mean MODEL.RESNEST.RADIX"),
    ToolCase("train_net: OUTPUT_DIR is a file", "train_net.py",
             lambda t: _d2_args(t, opts=["OUTPUT_DIR", _existing(t, "out.txt")]), "out.txt is a file, not a folder"),
    ToolCase("train_net: DATASETS.SYNTHETIC.ROOT is a file", "train_net.py",
             lambda t: _d2_args(t, opts=["DATASETS.SYNTHETIC.ROOT", _existing(t, "data.txt")]),
             "DATASETS.SYNTHETIC.ROOT " ),
    ToolCase("train_net: MODEL.WEIGHTS missing", "train_net.py",
             lambda t: _d2_args(t, ["--eval-only"], ["MODEL.WEIGHTS", t / "nope.pth"]),
             "MODEL.WEIGHTS " ),
    ToolCase("train_net: MODEL.WEIGHTS is a folder", "train_net.py",
             lambda t: _d2_args(t, ["--eval-only"], ["MODEL.WEIGHTS", t]), "is a folder, not a checkpoint file"),
    ToolCase("train_net: --eval-only without weights", "train_net.py", lambda t: _d2_args(t, ["--eval-only"]),
             "pass --allow-partial-weights to evaluate anyway"),
    ToolCase("train_net: OUTPUT_DIR held by a live run", "train_net.py",
             lambda t: _d2_args(t, opts=["OUTPUT_DIR", _live_lock(t)]), "is in use by another run"),
    ToolCase("lazyconfig_train_net: missing --config-file", "lazyconfig_train_net.py",
             lambda t: ["--config-file", t / "nope.py"], "is neither a file nor a shipped config"),
    ToolCase("lazyconfig_train_net: train.output_dir held by a live run", "lazyconfig_train_net.py",
             lambda t: ["--config-file", D2_LAZY_QUICKSTART, f"train.output_dir={_live_lock(t)}"],
             "train.output_dir "),
    ToolCase("lazyconfig_train_net: --eval-only without weights", "lazyconfig_train_net.py",
             lambda t: ["--config-file", D2_LAZY_QUICKSTART, "--eval-only", f"train.output_dir={t / 'out'}",
                        f"synthetic.root={t / 'data'}", "synthetic.num_train=2", "synthetic.num_val=1",
                        "synthetic.image_size=32"], "none were loaded (train.init_checkpoint is empty"),
    ToolCase("export_detectron2: --sample-image is not an image", "export_detectron2.py",
             lambda t: ["--config-file", D2_QUICKSTART, "--export-method", "tracing", "--output", t / "exported",
                        "--sample-image", _existing(t, "notes.png")], "is not an image detectron2 can read"),
]


@pytest.mark.parametrize("case", TOOL_CASES, ids=[case.id for case in TOOL_CASES])
def test_tool_user_error_is_one_message(case: ToolCase, tmp_path):
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    args = case.args(tmp_path)
    inputs = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p not in before}
    result = _tool(case.tool, *args, cwd=tmp_path if case.cwd_is_tmp else None)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and case.fragment in result.stderr, result.stderr
    assert "--debug" in result.stderr
    assert all(path.read_bytes() == data for path, data in inputs.items()), "a tool changed one of its inputs"
    _no_code_ran(tmp_path)


def test_tool_debug_shows_the_traceback(tmp_path):
    result = _tool("convert_weights.py", tmp_path / "nope.pth", tmp_path / "o.pth", "--to", "official", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


def test_convert_reports_every_dropped_entry(tmp_path):
    """An mmengine-style training checkpoint of our backbone: meta and optimizer are listed, not dropped silently."""
    state = {"backbone." + k: v for k, v in rb.create_model("resnest14").state_dict().items()}
    torch.save({"meta": {"epoch": 1}, "state_dict": {**state, "neck.conv.weight": torch.zeros(1)},
                "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "train.pth")
    result = _tool("convert_weights.py", tmp_path / "train.pth", tmp_path / "out.pth", "--to", "official")
    assert result.returncode == 0, result.stderr
    assert "meta (dict)" in result.stdout and "optimizer (dict)" in result.stdout
    assert "neck.conv.weight" in result.stdout and "openmmlab -> official" in result.stdout


# ---------------------------------------------------------------- what must work (it used to go wrong)
class _Trusted:  # an arbitrary object, in a file the user trusts
    pass


def test_unsafe_pickle_opt_in_reads_a_trusted_file(tmp_path):
    path = tmp_path / "trusted.pth"
    torch.save({"state_dict": rb.create_model("resnest14").state_dict(), "meta": _Trusted()}, path)
    with pytest.raises(UnsafeCheckpointError, match="test_bad_inputs._Trusted"):
        read_checkpoint(path)
    assert rb.load_pretrained(rb.create_model("resnest14"), str(path), allow_unsafe_pickle=True).format == "official"


@pytest.fixture
def two_sources(tmp_path, hub_cache):
    """Two different ResNeSt-14 weights served at two URLs that end in the same file name."""
    served = tmp_path / "served"
    models = {}
    for folder, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        models[folder] = rb.create_model("resnest14")
        (served / folder).mkdir(parents=True)
        torch.save(models[folder].state_dict(), served / folder / "weights.pth")
    with serve_directory(served) as base:
        yield {folder: (f"{base}/{folder}/weights.pth", model) for folder, model in models.items()}


def _same_weights(a, b) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_two_urls_with_one_file_name_never_share_a_cache_file(two_sources, hub_cache):
    """Before: the second URL returned the first one's weights (one cache file per file name)."""
    for _ in range(2):  # downloads, then cache hits: each URL keeps its own file
        for url, model in two_sources.values():
            target = rb.create_model("resnest14")
            assert rb.load_pretrained(target, url, progress=False).source == url
            assert _same_weights(target, model)
    (hub_cache / "checkpoints" / "weights.pth").write_bytes(b"replaced by someone")  # a file of unknown origin
    (hub_cache / "checkpoints" / "weights.pth.source").unlink()
    url, model = two_sources["a"]
    target = rb.create_model("resnest14")
    rb.load_pretrained(target, url, progress=False)  # downloaded again, elsewhere
    assert _same_weights(target, model)


def test_open_mmlab_name_never_takes_another_sources_file(two_sources, tmp_path, monkeypatch):
    """open-mmlab:// resolves through mmengine's table and caches in the core's URL-keyed cache."""
    from resnest_backbones.openmmlab.weights import resolve_openmmlab
    url_a, _ = two_sources["a"]
    url_b, model_b = two_sources["b"]
    rb.load_pretrained(rb.create_model("resnest14"), url_a, progress=False)  # <hub>/checkpoints/weights.pth is a's
    home = tmp_path / "mmengine_home"
    home.mkdir()
    (home / "open_mmlab.json").write_text(f'{{"resnest14_test": "{url_b}"}}')
    monkeypatch.setenv("MMENGINE_HOME", str(home))
    target = rb.create_model("resnest14")
    rb.load_pretrained(target, resolve_openmmlab("open-mmlab://resnest14_test"))
    assert _same_weights(target, model_b)


def test_detectron2_reads_numpy_pkl_weights_restricted(tmp_path):
    """A detectron2 model-zoo .pkl (numpy arrays): read without plain pickle, loaded into the detector."""
    import resnest_backbones.detectron2 as rd2
    from detectron2.modeling import build_model
    source, target = build_model(_d2_cfg()), build_model(_d2_cfg())
    path = tmp_path / "detector.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"model": {k: v.numpy() for k, v in source.state_dict().items()}, "__author__": "test"},
                    handle, protocol=2)
    rd2.ResNeStCheckpointer(target).load(str(path))
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())


def test_detectron2_loads_an_mmdet_checkpoint_of_resnest_backbone(tmp_path):
    """Before: detected as the detectron2 layout, then "Unsupported type found in checkpoint! meta"."""
    import resnest_backbones.detectron2 as rd2
    from detectron2.modeling import build_model
    from mmengine.logging import HistoryBuffer
    model = build_model(_d2_cfg())
    torch.manual_seed(3)
    backbone = rb.create_model("resnest14").state_dict()
    path = tmp_path / "mmdet_iter_10.pth"
    torch.save({"meta": {"iter": 10, "seed": 0}, "state_dict": {
        **{"backbone." + k: v for k, v in backbone.items()}, "neck.lateral_convs.0.conv.weight": torch.zeros(1),
        "rpn_head.rpn_conv.weight": torch.zeros(1), "roi_head.bbox_head.fc_cls.weight": torch.zeros(1)},
        "message_hub": {"log_scalars": {"train/loss": HistoryBuffer([1.5, 1.2], [1, 1])},
                        "runtime_info": {"eta": np.float64(12.5)}},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": []}]}}, path)
    rd2.ResNeStCheckpointer(model).resume_or_load(str(path), resume=False)
    loaded = model.state_dict()
    assert all(torch.equal(loaded["backbone.bottom_up." + k], v) for k, v in backbone.items())


def test_checkpoint_hashes_are_verified_before_reuse(tmp_path, hub_cache):
    """A file placed in the cache without a record is reused only if the hash in its name verifies."""
    from resnest_backbones.checkpoint import cache_path
    payload = b"weights"
    name = f"w-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    cache = hub_cache / "checkpoints"
    cache.mkdir(parents=True)
    (cache / name).write_bytes(payload)
    assert cache_path(f"http://host/{name}", str(cache)) == str(cache / name)  # verified: torch.hub's place
    (cache / "x-00000000.pth").write_bytes(payload)  # wrong hash: another URL's place
    assert cache_path("http://host/x-00000000.pth", str(cache)) != str(cache / "x-00000000.pth")


# ---------------------------------------------------------------- issue 19: what must work
def test_safetensors_load_through_every_route(tmp_path, monkeypatch):
    """A timm-layout .safetensors file: load_pretrained, create_model(pretrained=), MODEL.WEIGHTS (backbone and whole
    detector), init_cfg; never through torch.load or pickle. Before: "truncated or not a checkpoint"."""
    from detectron2.modeling import build_model
    from safetensors.torch import save_file

    import resnest_backbones.detectron2 as rd2
    from resnest_backbones.mmdet import MMDetResNeStBackbone as ResNeStBackbone
    torch.manual_seed(5)
    source = rb.create_model("resnest14", num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "timm.safetensors"))
    detector = build_model(_d2_cfg())
    save_file(detector.state_dict(), str(tmp_path / "detector.safetensors"))

    def refuse(*args, **kwargs):
        raise AssertionError("a .safetensors file went through torch.load / pickle")
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    backbone = rb.create_model("resnest14")
    assert rb.load_pretrained(backbone, str(tmp_path / "timm.safetensors")).skipped == ["fc.bias", "fc.weight"]
    assert _same_weights(rb.create_model("resnest14", pretrained=str(tmp_path / "timm.safetensors"),
                                         num_classes=1000), source)
    model = build_model(_d2_cfg())
    rd2.ResNeStCheckpointer(model).load(str(tmp_path / "timm.safetensors"))
    assert all(torch.equal(v, model.state_dict()["backbone.bottom_up." + k]) for k, v in backbone.state_dict().items())
    rd2.ResNeStCheckpointer(model).load(str(tmp_path / "detector.safetensors"))
    assert _same_weights(model, detector)
    mm = ResNeStBackbone(variant="resnest14", init_cfg=dict(type="Pretrained",
                                                            checkpoint=str(tmp_path / "timm.safetensors")))
    mm.init_weights()
    assert all(torch.equal(v, mm.state_dict()[k]) for k, v in backbone.state_dict().items())


def test_open_mmlab_name_of_a_safetensors_url_loads(tmp_path, hub_cache, monkeypatch):
    from safetensors.torch import save_file

    from resnest_backbones.openmmlab.weights import resolve_openmmlab
    served = tmp_path / "served"
    served.mkdir()
    source = rb.create_model("resnest14")
    save_file(source.state_dict(), str(served / "resnest14.safetensors"))
    home = tmp_path / "mmengine_home"
    home.mkdir()
    with serve_directory(served) as base:
        (home / "open_mmlab.json").write_text(f'{{"resnest14_st": "{base}/resnest14.safetensors"}}')
        monkeypatch.setenv("MMENGINE_HOME", str(home))
        target = rb.create_model("resnest14")
        rb.load_pretrained(target, resolve_openmmlab("open-mmlab://resnest14_st"))
    assert _same_weights(target, source)


@pytest.mark.parametrize("target", ["official", "openmmlab", "detectron2"])
def test_convert_weights_reads_and_writes_safetensors(tmp_path, target):
    """convert_weights.py: .pth -> .safetensors (the layout kept in its key names), .safetensors -> .pth, both
    loading back to the same weights; an existing output only with --overwrite."""
    source = _official_file(tmp_path)
    out = tmp_path / f"{target}.safetensors"
    result = _tool("convert_weights.py", source, out, "--to", target)
    assert result.returncode == 0 and f"saved {out}" in result.stdout, result.stderr
    back = tmp_path / "back.pth"
    result = _tool("convert_weights.py", out, back, "--to", "official")
    assert result.returncode == 0 and f"{target} -> official" in result.stdout, result.stderr
    for path in (out, back):
        assert _same_weights(rb.create_model("resnest14", pretrained=str(path)), rb.create_model(
            "resnest14", pretrained=str(source)))
    before = back.read_bytes()
    assert _tool("convert_weights.py", out, back, "--to", "openmmlab").returncode == 1 and back.read_bytes() == before
    assert _tool("convert_weights.py", out, back, "--to", "openmmlab", "--overwrite").returncode == 0
    assert back.read_bytes() != before


def test_killed_writers_temporary_files_are_removed_at_the_next_save(tmp_path):
    """Before: a save killed midway left a hidden temporary file that nothing removed."""
    from resnest_backbones.atomic_io import atomic_save, temporary_name
    from trust_situations import dead_pid
    target = tmp_path / "model_final.pth"
    killed = Path(temporary_name(str(target)).replace(f".{os.getpid()}-", f".{dead_pid()}-"))
    killed.write_bytes(b"half a checkpoint")
    live = Path(temporary_name(str(target)))  # a write in progress in this (running) process
    live.write_bytes(b"being written")
    legacy = tmp_path / ".model_0000009.pth.0123abcd.tmp"  # written by a version without the pid in the name
    legacy.write_bytes(b"old")
    os.utime(legacy, (0, 0))
    recent_legacy = tmp_path / ".model_0000019.pth.0123abcd.tmp"
    recent_legacy.write_bytes(b"maybe being written")
    mine = tmp_path / ".notes.tmp"
    mine.write_text("the user's file")
    atomic_save({"x": torch.ones(1)}, str(tmp_path / "model_0000001.pth"))
    assert not killed.exists() and not legacy.exists()
    assert live.exists() and recent_legacy.exists() and mine.read_text() == "the user's file"


def test_an_ended_runs_lock_is_taken_over_and_released(tmp_path):
    """A run killed on this host leaves its lock; the next run takes it over (and says so), nests, and releases."""
    from trust_situations import dead_pid, write_lock
    from resnest_backbones.ownership import LOCK_NAME, release_run_lock
    write_lock(tmp_path / "out", dead_pid(), host_name())
    lock = acquire_run_lock(str(tmp_path / "out"))
    assert "took over the lock of a run that is no longer running" in lock.describe_takeover()
    assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert acquire_run_lock(str(tmp_path / "out")) is lock  # the same process again: nested, not refused
    lock.release()
    assert (tmp_path / "out" / LOCK_NAME).exists()
    release_run_lock(str(tmp_path / "out"))
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # the folder is free (--resume of a finished run included)
    acquire_run_lock(str(tmp_path / "out")).release()


def test_export_with_weights_prints_one_line(tmp_path):
    """Before: the whole 150-key load report on stdout."""
    result = _tool("export.py", "resnest14", "--format", "torchscript", "--out", tmp_path / "x.pt", "--size", "64",
                   "--weights", _official_file(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("loaded ") and "conv1.0.weight" not in result.stdout, lines
