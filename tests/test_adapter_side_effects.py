"""Adapters that only register: importing one changes nothing process-wide. The stack fixes some runs need are
opt-in and scoped: a weights-only allow-list only around the loads that read mmengine checkpoints (with a getattr
restricted to HistoryBuffer's statistics), checkpoints saved as plain data by a hook, the LVIS numpy alias only
during LVIS evaluation. (The runner's CPU distributed start and resume run end to end in test_mm*_mim.py.)"""
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from conftest import ROOT
from resnest_backbones.compat import lvis_on_numpy2
from resnest_backbones.openmmlab.mmengine_checkpoints import _allowed_globals, mmengine_checkpoint_globals
from resnest_backbones.openmmlab.runner import SafeRunner, WeightsOnlyCheckpointHook

# What a process-wide fix would touch: CUDA device selection, numpy's namespace, torch's unpickling allow-list,
# pickle's reduction table, exit handlers.
SNAPSHOT = """
import atexit, copyreg, numpy, sys, torch
def snapshot():
    return (torch.cuda.set_device, sorted(numpy.__dict__), [repr(g) for g in torch.serialization.get_safe_globals()],
            dict(copyreg.dispatch_table), atexit._ncallbacks())
"""


@pytest.mark.parametrize("framework,adapters", [
    # The frameworks first, with every module their registries import on a lookup (their own import-time effects,
    # e.g. scipy's copyreg entries), so that only the adapter's own effects count.
    ("from mmdet.utils import register_all_modules; register_all_modules(False); import mmdet.evaluation",
     ["resnest_backbones.mmdet", "resnest_backbones.openmmlab.runner", "resnest_backbones.openmmlab.lvis"]),
    ("from mmseg.utils import register_all_modules; register_all_modules(False)",
     ["resnest_backbones.mmseg", "resnest_backbones.openmmlab.runner"]),
    ("import detectron2.modeling, detectron2.checkpoint", ["resnest_backbones.detectron2"]),
])
def test_adapter_import_leaves_the_process_unchanged(framework, adapters):
    code = SNAPSHOT + f"""
{framework}
before = snapshot()
import importlib
for name in {adapters!r}:
    importlib.import_module(name)
after = snapshot()
names = ("torch.cuda.set_device", "numpy namespace", "torch safe globals", "copyreg.dispatch_table", "atexit")
print([name for name, a, b in zip(names, before, after) if a != b], "float" in numpy.__dict__,
      any(m.startswith("mmdeploy") or m.endswith("mmdeploy_rewriters") for m in sys.modules))  # deploy-only
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[] False False"


def _mmengine_checkpoint() -> bytes:
    """What mmengine 0.10 saves besides the weights: message-hub logs and numpy values."""
    hub = MessageHub.get_instance("resnest_side_effects")
    for value in (1.0, 0.5, 0.25):
        hub.update_scalar("train/loss", value)
    hub.update_info("eta", np.float64(12.5))
    buffer = io.BytesIO()
    torch.save({"meta": {"iter": 3, "best_score": np.float64(0.5)}, "state_dict": {"w": torch.full((1,), 7.0)},
                "message_hub": hub.state_dict()}, buffer)
    return buffer.getvalue()


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, *args, **kwargs):
        return {}


def _load(data: bytes):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def assert_allow_list_closed():
    """None of the scoped entries is left in torch's process-wide allow-list (torch registers its own classes lazily,
    so the list is compared by what we add, not as a whole)."""
    ours = {repr(entry) for entry in _allowed_globals()}
    assert not ours & {repr(entry) for entry in torch.serialization.get_safe_globals()}


def test_allow_list_is_scoped_to_the_block():
    data = _mmengine_checkpoint()
    assert_allow_list_closed()
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        _load(data)  # torch's default: refused
    with mmengine_checkpoint_globals():
        loaded = _load(data)
    assert loaded["message_hub"]["log_scalars"]["train/loss"].mean() == pytest.approx(0.5833333)
    assert loaded["message_hub"]["runtime_info"]["eta"] == 12.5 and loaded["meta"]["best_score"] == 0.5
    assert_allow_list_closed()
    with pytest.raises(pickle.UnpicklingError):
        _load(data)  # refused again after the block


def test_safe_runner_reads_mmengine_checkpoints_where_it_loads_them(tmp_path):
    path = tmp_path / "iter_3.pth"
    path.write_bytes(_mmengine_checkpoint())
    plain = Runner(model=_Toy(), work_dir=str(tmp_path / "plain"), experiment_name="resnest_plain_runner")
    safe = SafeRunner(model=_Toy(), work_dir=str(tmp_path / "safe"), experiment_name="resnest_safe_runner")
    with pytest.raises(pickle.UnpicklingError):
        plain.load_checkpoint(str(path))  # mmengine's Runner under torch >= 2.6
    checkpoint = safe.load_checkpoint(str(path))
    assert safe.model.w.item() == 7.0 and checkpoint["message_hub"]["runtime_info"]["eta"] == 12.5
    assert_allow_list_closed()
    with pytest.raises(pickle.UnpicklingError):
        plain.load_checkpoint(str(path))  # still refused outside SafeRunner's call


class _Reaches:
    """A crafted object: unpickles as getattr(HistoryBuffer, <name>), the step towards any global of mmengine."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return getattr, (HistoryBuffer, self.name)


@pytest.mark.parametrize("name", ["__init__", "register_statistics"])
def test_getattr_is_restricted_to_history_buffer_statistics(name):
    buffer = io.BytesIO()
    torch.save({"x": _Reaches(name), "ok": _Reaches("mean")}, buffer)
    with mmengine_checkpoint_globals(), pytest.raises(pickle.UnpicklingError, match=f"getattr.*{name}"):
        _load(buffer.getvalue())
    buffer = io.BytesIO()
    torch.save({"ok": _Reaches("mean")}, buffer)
    with mmengine_checkpoint_globals():
        assert _load(buffer.getvalue())["ok"] is HistoryBuffer.mean


def test_hook_saves_plain_data_and_restores_the_logs():
    checkpoint = torch.load(io.BytesIO(_mmengine_checkpoint()), weights_only=False)  # as mmengine builds it
    hook = WeightsOnlyCheckpointHook()
    hook.before_save_checkpoint(None, checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    loaded = _load(buffer.getvalue())  # a bare weights-only load: what mmseg's tools/test.py does
    assert loaded["meta"]["best_score"] == 0.5 and loaded["state_dict"]["w"].item() == 7.0
    hook.after_load_checkpoint(None, loaded)
    scalars = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(scalars, HistoryBuffer) and scalars.mean() == pytest.approx(0.5833333)
    hub = MessageHub.get_instance("resnest_side_effects_resumed")
    hub.load_state_dict(loaded["message_hub"])  # what Runner.resume does with it
    assert hub.get_scalar("train/loss").current() == 0.25 and hub.get_info("eta") == 12.5


def test_lvis_numpy_alias_only_during_evaluation():
    from mmdet.evaluation import LVISMetric
    from mmdet.registry import METRICS
    import resnest_backbones.openmmlab.lvis  # noqa: F401  registers NumpyCompatLVISMetric
    assert issubclass(METRICS.get("NumpyCompatLVISMetric"), LVISMetric)
    assert "float" not in np.__dict__
    with lvis_on_numpy2():
        assert np.float is float  # what lvis/eval.py uses
    assert "float" not in np.__dict__
