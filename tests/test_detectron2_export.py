"""TorchScript: the detectron2 ResNeSt backbone (plain and with FPN) under torch.jit.script, and detectron2's own
export paths (scripting_with_instances, TracingAdapter) on the quick-start Mask R-CNN, each compared with eager
PyTorch on random weights; then tools/export_detectron2.py end to end."""
import copy
import io
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import ROOT, randomize_norms, rel_err

import resnest_backbones.detectron2  # noqa: F401  (fails the module if detectron2 is missing)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.testing import assert_instances_allclose
from detectron2.structures import Boxes, Instances
from resnest_backbones.apps.detectron2_export import detectron2_export, sample_image, script_rcnn, trace_rcnn
from resnest_backbones.apps.detectron2_train import load_training_config
from resnest_backbones.detectron2 import load_config

QUICKSTART = str(ROOT / "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml")
FOUR = "['res2', 'res3', 'res4', 'res5']"


def _reload(module):
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


def _backbone(*opts):
    cfg = load_config("", ["MODEL.RESNEST.VARIANT", "resnest14", "MODEL.RESNETS.NORM", "BN",
                           "MODEL.RESNETS.OUT_FEATURES", FOUR, "MODEL.FPN.IN_FEATURES", FOUR, *opts])
    torch.manual_seed(0)
    return randomize_norms(build_backbone(cfg)).eval()


@pytest.mark.parametrize("opts", [
    ["MODEL.BACKBONE.NAME", "build_resnest_backbone"],
    ["MODEL.BACKBONE.NAME", "build_resnest_backbone", "MODEL.RESNEST.RADIX", "1", "MODEL.RESNEST.CARDINALITY", "2",
     "MODEL.RESNEST.AVD_FIRST", "True", "MODEL.RESNETS.RES5_DILATION", "2", "MODEL.BACKBONE.FREEZE_AT", "2"],
    ["MODEL.BACKBONE.NAME", "build_resnest_backbone", "MODEL.RESNEST.RADIX", "0", "MODEL.RESNETS.NORM", "GN",
     "MODEL.RESNETS.OUT_FEATURES", "['res3', 'res4']"],
    ["MODEL.BACKBONE.NAME", "build_resnest_fpn_backbone"],
    ["MODEL.BACKBONE.NAME", "build_retinanet_resnest_fpn_backbone", "MODEL.RESNEST.RADIX", "4"],
], ids=["plain", "radix1-card2-dc5-frozen", "radix0-gn-res3res4", "fpn", "retinanet-fpn-radix4"])
def test_backbone_scripts_and_matches_eager(opts):
    model = _backbone(*opts)
    detectron2_export()  # detectron2's export module makes its FPN scriptable (FPN.__prepare_scriptable__)
    scripted = _reload(torch.jit.script(copy.deepcopy(model)))  # torch swaps prepared submodules into the original
    for size in ((1, 3, 64, 96), (2, 3, 96, 64)):
        x = torch.rand(*size)
        with torch.no_grad():
            expected, actual = model(x), scripted(x)
        assert list(actual) == list(expected) and expected
        for name in expected:
            assert rel_err(expected[name], actual[name]) < 1e-5, name


def _train_mode_backbone():
    model = _backbone("MODEL.BACKBONE.NAME", "build_resnest_backbone").train()
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    return model, x


def _grads(model, x, outputs):
    loss = sum((v * (i + 1)).mean() for i, v in enumerate(outputs.values()))
    return torch.autograd.grad(loss, [x] + [p for p in model.parameters() if p.requires_grad])


def test_scripting_in_training_mode_runs_standard_ops_with_eager_gradients():
    # Training-only formulations (gradient checkpointing, a custom autograd Function) must stay out of TorchScript:
    # the scripted module, even training, runs the plain forward and autograd gives eager's gradients.
    model, x = _train_mode_backbone()
    scripted = torch.jit.script(model)
    expected = _grads(model, x, model(x))
    actual = _grads(model, x, scripted(x))
    assert all(rel_err(e, a) < 1e-4 for e, a in zip(expected, actual))


def test_tracing_in_training_mode_records_only_standard_ops():
    model, x = _train_mode_backbone()
    traced = torch.jit.trace(model, x, strict=False, check_trace=False)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert not any(k.startswith("prim::PythonOp") for k in kinds), sorted(kinds)
    expected = _grads(model, x, model(x))
    actual = _grads(model, x, traced(x))
    assert all(rel_err(e, a) < 1e-4 for e, a in zip(expected, actual))


@pytest.fixture(scope="module")
def mask_rcnn():
    cfg = load_training_config(QUICKSTART, ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    torch.manual_seed(0)
    model = randomize_norms(build_model(cfg), seed=1).eval()
    torch.manual_seed(1)
    return cfg, model, torch.rand(3, 96, 128) * 255


def test_detectron2_scripting_of_mask_rcnn_matches_eager(mask_rcnn):
    _, model, image = mask_rcnn
    keys = list(model.state_dict())
    scripted = _reload(script_rcnn(model))
    assert list(model.state_dict()) == keys  # the model itself is left as it was (torch prepares submodules in place)
    small = nn.functional.interpolate(image[None], scale_factor=0.75)[0]
    with torch.no_grad():
        for img in (image, small):
            expected = model.inference([{"image": img}], do_postprocess=False)[0]
            fields = scripted([{"image": img}])[0]
            assert len(expected) > 0 and set(fields) >= {"pred_boxes", "scores", "pred_classes", "pred_masks"}
            assert torch.allclose(fields["pred_boxes"], expected.pred_boxes.tensor, atol=1e-3)
            assert torch.allclose(fields["scores"], expected.scores, atol=1e-5)
            assert torch.equal(fields["pred_classes"], expected.pred_classes)
            assert torch.allclose(fields["pred_masks"], expected.pred_masks, atol=1e-5)


def test_detectron2_tracing_adapter_of_mask_rcnn_matches_eager(mask_rcnn):
    _, model, image = mask_rcnn
    small = nn.functional.interpolate(image[None], scale_factor=0.75)[0]
    traced, adapter = trace_rcnn(model, small)  # traced at one size, run at another
    traced = _reload(traced)
    with torch.no_grad():
        expected = model.inference([{"image": image}], do_postprocess=False)[0]
        actual = adapter.outputs_schema(traced(image))
    assert len(expected) > 0
    assert_instances_allclose(expected, actual, size_as_tensor=True)


def test_export_refuses_a_training_model(mask_rcnn):
    _, model, image = mask_rcnn
    model.train()
    try:
        with pytest.raises(ValueError, match="eval mode"):
            script_rcnn(model)
    finally:
        model.eval()


@pytest.mark.parametrize("method", ["scripting", "tracing"])
def test_export_tool_writes_a_file_equal_to_eager(tmp_path, mask_rcnn, method):
    cfg, model, image = mask_rcnn
    weights = tmp_path / "weights.pth"
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("weights")
    picture = tmp_path / "sample.png"
    from PIL import Image
    Image.fromarray(image.permute(1, 2, 0).byte().numpy()).save(picture)
    result = subprocess.run([sys.executable, str(ROOT / "tools/export_detectron2.py"), "--config-file", QUICKSTART,
                             "--export-method", method, "--output", str(tmp_path / "out"), "--sample-image",
                             str(picture), "MODEL.WEIGHTS", str(weights), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"],
                            capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # this checkout, not an installed copy
    assert result.returncode == 0, result.stderr[-4000:]
    assert "largest difference to eager" in result.stdout + result.stderr
    exported = torch.jit.load(str(tmp_path / "out" / "model.ts"))
    img = sample_image(cfg, str(picture))  # the PNG read back and resized as the tool does
    with torch.no_grad():
        expected = model.inference([{"image": img}], do_postprocess=False)[0]
        if method == "scripting":
            fields = exported([{"image": img}])[0]
            actual = Instances(expected.image_size, **{k: v for k, v in fields.items() if k != "pred_boxes"})
            actual.pred_boxes = Boxes(fields["pred_boxes"])
        else:
            actual = trace_rcnn(model, img)[1].outputs_schema(exported(img))
    assert len(expected) > 0
    assert_instances_allclose(expected, actual, size_as_tensor=method == "tracing")
