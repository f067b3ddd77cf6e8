"""load_pretrained: layout detection, strict errors, safe unpickling, verified downloads, and the converter tool."""
import functools
import dataclasses
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import resnest_backbones as rb
from resnest_backbones import keymaps, variants
from resnest_backbones.checkpoint import CheckpointMismatchError
from conftest import ROOT, randomize_norms, rel_err, serve_directory


@pytest.fixture(scope="module")
def source_model():
    torch.manual_seed(0)
    return randomize_norms(rb.create_model("resnest14", num_classes=1000)).eval()


def _features_equal(a, b):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fa, fb = a.eval().forward_features(x), b.eval().forward_features(x)
    return all(rel_err(fa[k], fb[k]) == 0 for k in fa)


@pytest.mark.parametrize("layout", ["official", "openmmlab", "openmmlab_wrapped", "detectron2", "dataparallel"])
def test_every_layout_is_recognised_and_loads(layout, source_model, tmp_path):
    state = source_model.state_dict()
    if layout == "official":
        checkpoint, expected = state, "official"
    elif layout == "openmmlab":
        checkpoint, expected = keymaps.from_official(state, "openmmlab"), "openmmlab"
    elif layout == "openmmlab_wrapped":  # as mmengine saves a whole detector: state_dict + backbone. prefix + heads
        body = keymaps.official_to_openmmlab({k: v for k, v in state.items() if not k.startswith("fc.")})
        checkpoint = {"meta": {"epoch": 1}, "state_dict": {**{"backbone." + k: v for k, v in body.items()},
                                                           "neck.lateral_convs.0.conv.weight": torch.zeros(1)}}
        expected = "openmmlab"
    elif layout == "detectron2":
        checkpoint, expected = keymaps.from_official(state, "detectron2"), "detectron2"
        checkpoint["model"]["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(1)
    else:
        checkpoint, expected = {"module." + k: v for k, v in state.items()}, "official"
    path = tmp_path / "ckpt.pth"
    torch.save(checkpoint, path)
    target = rb.create_model("resnest14")
    report = rb.load_pretrained(target, str(path))
    assert report.format == expected
    assert _features_equal(source_model, target)


def test_openmmlab_names_match_mmdet_resnest_keys():
    """The OpenMMLab layout uses exactly the key names of mmdet's own ResNeSt (depth 50)."""
    from mmdet.models.backbones import ResNeSt as MMDetResNeSt
    mm_keys = set(MMDetResNeSt(depth=50).state_dict())
    ours = keymaps.official_to_openmmlab(rb.create_model("resnest50").state_dict())
    assert set(ours) == mm_keys


def test_wrong_architecture_lists_every_kind_of_mismatch(source_model):
    target = rb.create_model("resnest26")
    with pytest.raises(CheckpointMismatchError) as error:
        rb.load_pretrained(target, source_model.state_dict())
    assert "missing keys" in str(error.value) and "layer1.1.conv1.weight" in str(error.value)
    wide = rb.create_model("resnest14", stem_width=64)
    with pytest.raises(CheckpointMismatchError, match="shape mismatches: conv1.0.weight"):
        rb.load_pretrained(wide, source_model.state_dict())
    state = dict(source_model.state_dict())
    state["layer1.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="unexpected keys: layer1.0.extra.weight"):
        rb.load_pretrained(rb.create_model("resnest14", num_classes=1000), state)


def test_unrecognised_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="Unrecognised checkpoint layout"):
        rb.load_pretrained(rb.create_model("resnest14"), {"encoder.weight": torch.zeros(1)})


class _Trusted:  # an arbitrary pickled object, as in training checkpoints
    pass


def test_pickled_objects_are_refused_unless_trusted(source_model, tmp_path):
    path = tmp_path / "training_state.pth"
    torch.save({"state_dict": source_model.state_dict(), "meta": _Trusted()}, path)
    with pytest.raises(RuntimeError, match="allow_unsafe_pickle=True"):
        rb.load_pretrained(rb.create_model("resnest14"), str(path))
    report = rb.load_pretrained(rb.create_model("resnest14"), str(path), allow_unsafe_pickle=True)
    assert report.format == "official"


def test_missing_file_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="not found"):
        rb.load_pretrained(rb.create_model("resnest14"), "/nonexistent/resnest14.pth")


# ---------------------------------------------------------------- downloads, against a server on 127.0.0.1
@pytest.fixture
def server(tmp_path, hub_cache):
    served = tmp_path / "served"
    served.mkdir()
    with serve_directory(served) as base:
        yield served, base


def _save_hashed(model, directory: Path, stem: str) -> str:
    tmp = directory / "tmp.pth"
    torch.save(model.state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    name = f"{stem}-{digest}.pth"
    tmp.rename(directory / name)
    return name


def test_create_model_pretrained_downloads_verifies_and_caches(server, source_model, monkeypatch):
    served, base = server
    name = _save_hashed(source_model, served, "resnest14")
    published = variants.VARIANTS["resnest14"]
    monkeypatch.setitem(variants.VARIANTS, "resnest14", dataclasses.replace(
        published, checkpoint=variants.Checkpoint(name, f"{base}/{name}", 224)))
    model = rb.create_model("resnest14", pretrained=True, num_classes=1000)
    assert _features_equal(source_model, model)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    assert cached.exists()
    (served / name).unlink()  # a second call uses the cache, not the network
    rb.load_pretrained(rb.create_model("resnest14"), "resnest://resnest14")


def test_wrong_hash_is_refused_and_not_cached(server, source_model):
    served, base = server
    published = variants.VARIANTS["resnest14"].checkpoint.file_name  # real name, real hash, wrong content
    torch.save(source_model.state_dict(), served / published)
    with pytest.raises(RuntimeError, match="SHA-256 does not start with '9c8fe254'"):
        rb.load_pretrained(rb.create_model("resnest14"), f"{base}/{published}")
    assert not (Path(torch.hub.get_dir()) / "checkpoints" / published).exists()


def test_truncated_download_is_a_clear_error(server, source_model):
    served, base = server
    name = _save_hashed(source_model, served, "resnest14")
    data = (served / name).read_bytes()
    (served / name).write_bytes(data[: len(data) // 2])  # hash in the name is the full file's
    with pytest.raises(RuntimeError, match="corrupt, truncated"):
        rb.load_pretrained(rb.create_model("resnest14"), f"{base}/{name}")
    (served / "plain.pth").write_bytes(data[: len(data) // 2])  # no hash in the name: torch.load must notice
    with pytest.raises(RuntimeError, match="truncated or not a checkpoint"):
        rb.load_pretrained(rb.create_model("resnest14"), f"{base}/plain.pth")


def test_unreachable_url_is_a_clear_error(hub_cache):
    with pytest.raises(RuntimeError, match="Could not download"):
        rb.load_pretrained(rb.create_model("resnest14"), "http://127.0.0.1:9/resnest14-00000000.pth")


# ---------------------------------------------------------------- tools/convert_weights.py
def _convert(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "convert_weights.py"), *map(str, args)],
                          capture_output=True, text=True, cwd="/", env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_convert_tool_round_trips_and_reports(source_model, tmp_path):
    official = tmp_path / "official.pth"
    torch.save(source_model.state_dict(), official)
    result = _convert(official, tmp_path / "d2.pth", "--to", "detectron2", "--variant", "resnest14")
    assert result.returncode == 0, result.stderr
    assert "fc.weight" in result.stdout and "NOT converted" in result.stdout
    d2 = torch.load(tmp_path / "d2.pth", weights_only=True)
    assert all(k.startswith("backbone.bottom_up.") for k in d2["model"])
    assert _convert(tmp_path / "d2.pth", tmp_path / "mm.pth", "--to", "openmmlab").returncode == 0
    assert _convert(tmp_path / "mm.pth", tmp_path / "back.pth", "--to", "official").returncode == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    state = source_model.state_dict()
    assert set(back) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(back[k], state[k]) for k in back)


def test_convert_tool_reports_detector_heads_and_rejects_wrong_variant(source_model, tmp_path):
    checkpoint = keymaps.from_official(source_model.state_dict(), "detectron2")
    checkpoint["model"]["roi_heads.box_head.fc1.weight"] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / "detector.pth")
    result = _convert(tmp_path / "detector.pth", tmp_path / "out.pth", "--to", "official")
    assert result.returncode == 0 and "roi_heads.box_head.fc1.weight" in result.stdout
    wrong = _convert(tmp_path / "detector.pth", tmp_path / "out2.pth", "--to", "official", "--variant",
                     "resnest50")
    assert wrong.returncode != 0 and "does not fit" in wrong.stderr


# ---------------------------------------------------------------- restricted unpickling reads what real files hold
def test_restricted_reader_reads_every_pickle_protocol_and_torch_format(tmp_path):
    """numpy .pkl weights in every pickle protocol, both torch.save formats, numpy 1.x names, Python 2 names."""
    import pickle
    import numpy as np
    from resnest_backbones import safe_pickle
    from resnest_backbones.checkpoint import read_checkpoint
    weights = {"conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.int64(3), "tags": {"a", "b"}}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(weights, protocol=protocol))
        loaded = read_checkpoint(path)
        assert torch.equal(loaded["conv.weight"], torch.arange(6.0).reshape(2, 3)), protocol
        assert loaded["step"] == 3 and loaded["tags"] == {"a", "b"}
    state = {"w": torch.randn(3, 2), "n": torch.tensor(5)}
    for zipped in (True, False):
        torch.save(state, tmp_path / "t.pth", _use_new_zipfile_serialization=zipped)
        loaded = read_checkpoint(tmp_path / "t.pth")
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
    numpy2 = pickle.dumps(np.ones(2), protocol=2)  # GLOBAL opcodes: module names as newline-ended text
    numpy1 = numpy2.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert numpy1 != numpy2 and (safe_pickle.load(io.BytesIO(numpy1)) == 1).all()
    python2 = b"\x80\x02c__builtin__\nset\n]q\x00(K\x01K\x02e\x85R."  # set([1, 2]) as Python 2 pickles it
    assert safe_pickle.load(io.BytesIO(python2)) == {1, 2}


def test_restricted_reader_reads_mmengine_message_hub_and_refuses_more(tmp_path):
    from mmengine.logging import HistoryBuffer
    import numpy as np
    from resnest_backbones.checkpoint import UnsafeCheckpointError, read_checkpoint
    buffer = HistoryBuffer([1.0, 2.0], [1, 1])
    torch.save({"message_hub": {"log_scalars": {"loss": buffer}, "runtime_info": {"eta": np.float64(3.5)}}},
               tmp_path / "hub.pth")
    hub = read_checkpoint(tmp_path / "hub.pth")["message_hub"]
    assert hub["log_scalars"]["loss"].mean() == 1.5 and hub["runtime_info"]["eta"] == 3.5
    torch.save({"hook": functools.partial(print, "x")}, tmp_path / "partial.pth")
    with pytest.raises(UnsafeCheckpointError, match="functools.partial"):
        read_checkpoint(tmp_path / "partial.pth")
