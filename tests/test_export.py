"""TorchScript and ONNX (run by onnxruntime) exports compute what eager computes, at another input size too."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import resnest_backbones as rb
from resnest_backbones import export
from resnest_backbones.fast_inference import is_fast_inference
from test_fast_inference import randomize

ROOT = Path(__file__).resolve().parents[1]
TRACE_INPUT = torch.rand(1, 3, 64, 64)
CHECK_INPUT = torch.rand(2, 3, 96, 80)  # other batch and size than the trace: shapes must stay dynamic


def small_model(**overrides):
    return randomize(rb.create_model("resnest50_fast_4s2x40d", layers=[1, 1, 1, 1], num_classes=5,
                                     **overrides)).eval()


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fused"])
def test_torchscript_matches_eager(fast, tmp_path):
    model = small_model()
    path = tmp_path / "model.pt"
    export.export_torchscript(model, str(path), TRACE_INPUT, fast_inference=fast)
    loaded = torch.jit.load(str(path))
    assert export.check_torchscript(loaded, model, CHECK_INPUT) < 1e-5
    assert not any(m.training for m in model.modules()) and not is_fast_inference(model)


@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fused"])
def test_onnx_features_match_eager(fast, tmp_path):
    model = small_model()
    path = tmp_path / "model.onnx"
    names = export.export_onnx(model, str(path), TRACE_INPUT, fast_inference=fast)
    assert names == ["res2", "res3", "res4", "res5"]
    assert export.check_onnx(str(path), model, CHECK_INPUT) < 1e-5
    if fast:  # the fused form: BN folded, split attention with static shapes only (dynamic batch, height, width)
        import onnx
        ops = [node.op_type for node in onnx.load(str(path)).graph.node]
        assert "BatchNormalization" not in ops and not {"Shape", "Gather", "Split", "Concat"} & set(ops), ops
        assert ops.count("Softmax") == 4 and ops.count("Reshape") == 8  # one block per stage, two static reshapes


def test_onnx_logits_and_dilated_radix1(tmp_path):
    model = randomize(rb.create_model("resnest50_fast_1s1x64d", layers=[1, 1, 1, 1], num_classes=5,
                                      output_stride=8)).eval()
    path = tmp_path / "model.onnx"
    assert export.export_onnx(model, str(path), TRACE_INPUT, fast_inference=True, head=True) == ["logits"]
    assert export.check_onnx(str(path), model, CHECK_INPUT, head=True) < 1e-5


def test_checks_catch_a_wrong_model(tmp_path):
    # The numeric checks must be able to fail: an export of other weights differs from the reference model.
    path = tmp_path / "model.onnx"
    export.export_onnx(small_model(), str(path), TRACE_INPUT)
    other = randomize(small_model(), seed=1)
    assert export.check_onnx(str(path), other, CHECK_INPUT) > 1e-3
    export.export_torchscript(small_model(), str(tmp_path / "model.pt"), TRACE_INPUT)
    assert export.check_torchscript(torch.jit.load(str(tmp_path / "model.pt")), other, CHECK_INPUT) > 1e-3
    with pytest.raises(ValueError, match="output count"):  # fewer outputs than the eager model must not pass
        export.max_relative_error([torch.ones(1)], [torch.ones(1), torch.ones(2)])


def test_head_needs_a_classifier():
    with pytest.raises(ValueError, match="num_classes"):
        export.ExportWrapper(rb.create_model("resnest14"), head=True)


def test_cli_exports_and_verifies(tmp_path):
    weights = tmp_path / "weights.pth"
    model = randomize(rb.create_model("resnest14", num_classes=5)).eval()
    torch.save(model.state_dict(), weights)
    out = tmp_path / "cli.onnx"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "export.py"), "resnest14",
                             "--format", "onnx", "--out", str(out), "--fast-inference", "--weights", str(weights),
                             "--num-classes", "5", "--size", "64"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert out.exists()
    assert "max relative error" in result.stdout
