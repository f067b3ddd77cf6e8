"""ONNX export of detectron2 detectors (tools/export_detectron2.py --format onnx), the runner without torch
(resnest_backbones/onnx_runner.py) and the ONNX evaluation (tools/eval_onnx_detectron2.py), each against detectron2:

- the runner's own steps against detectron2's functions: read_image, ResizeShortestEdge, paste_masks_in_image;
- every model kind of configs/detectron2 (Faster, Cascade, Mask and Cascade Mask R-CNN paper configs with small heads
  and resnest14, one at its real variant; the quick start; the LazyConfig quick start), random weights, exported by
  the tool (traced on one image) and run by the runner on an image of another size, against DefaultPredictor: the
  same classes, boxes within 0.5 px, scores within 1e-4, mask IoU >= 0.99 per instance;
- the exported graph: a BatchNorm backbone fused (no BatchNormalization) with static shapes in split attention; the
  quick start's GroupNorm kept;
- a user's steps: the tool and the runner as commands (the runner with torch and detectron2 made unimportable), and
  the evaluation with COCOEvaluator beside the PyTorch model;
- bad input: one message naming the input and the fix; the weights and an earlier export never overwritten.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, randomize_norms

import resnest_backbones.detectron2  # noqa: F401  (fails the module if detectron2 is missing)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image as detectron2_read_image
from detectron2.engine import DefaultPredictor
from detectron2.layers import paste_masks_in_image
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from resnest_backbones import onnx_runner
from resnest_backbones.apps import detectron2_export_tool, detectron2_onnx_eval
from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
from resnest_backbones.apps.detectron2_deployment import load_deployment
from resnest_backbones.apps.detectron2_onnx import (check_against_eager, compare_predictions, eager_predict,
                                                    export_onnx, instances_to_numpy)
from resnest_backbones.apps.detectron2_train import load_training_config
from resnest_backbones.apps.onnx_tolerances import masks_agree
from resnest_backbones.onnx_runner import OnnxPredictor

CONFIGS = ROOT / "configs" / "detectron2"
QUICKSTART = str(CONFIGS / "quickstart_mask_rcnn_s14_synthetic.yaml")
LAZY_QUICKSTART = str(CONFIGS / "lazy" / "quickstart_mask_rcnn_s14_synthetic.py")
RUNNER = ROOT / "resnest_backbones" / "onnx_runner.py"
CHECKOUT = {**os.environ, "PYTHONPATH": str(ROOT)}  # a tool run elsewhere imports this checkout, not an installed copy
# Small test-time input, every detection kept (random weights score low), cheap proposals.
TEST_TIME = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160",
             "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.RPN.PRE_NMS_TOPK_TEST", "200",
             "MODEL.RPN.POST_NMS_TOPK_TEST", "100"]
# The paper configs' FPN and 4conv1fc heads at 32/64 channels (a 256-channel cascade is a 230 MB file, 50 s to export).
SMALL_HEADS = ["MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.CONV_DIM", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
               "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.WEIGHTS", ""]
S14 = ["MODEL.RESNEST.VARIANT", "resnest14"]
KINDS = {
    "faster": ("faster_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml", S14 + SMALL_HEADS),
    "cascade": ("cascade_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml", S14 + SMALL_HEADS),
    "mask": ("mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml", S14 + SMALL_HEADS),
    "cascade-mask": ("cascade_mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml", S14 + SMALL_HEADS),
    "mask-s50-real-variant": ("mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml", SMALL_HEADS),
}


def _image(path: Path, height: int, width: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a tiny synthetic dataset (the quick start's test split), and two images of other sizes: one
    to trace on, one to compare on (a resized size the trace never saw)."""
    root = tmp_path_factory.mktemp("onnx")
    data = ["DATASETS.SYNTHETIC.ROOT", str(root / "data"), "DATASETS.SYNTHETIC.NUM_TRAIN", "2",
            "DATASETS.SYNTHETIC.NUM_VAL", "3", "DATASETS.SYNTHETIC.IMAGE_SIZE", "96"]
    register_synthetic_datasets(load_training_config(QUICKSTART, data))  # made as after a quick start
    return root, data, _image(root / "trace.png", 150, 200, 0), _image(root / "other.png", 220, 140, 1)


def _random_detector(cfg, path: Path) -> str:
    """A checkpoint of ``cfg``'s detector with random weights and BN statistics; mask logits spread wide (few
    pixels near the 0.5 threshold) and mostly positive, so that pasted masks are not empty."""
    torch.manual_seed(0)
    model = randomize_norms(build_model(cfg), seed=1).eval()
    if cfg.MODEL.MASK_ON:
        with torch.no_grad():
            model.roi_heads.mask_head.predictor.weight.normal_(std=0.5)
            model.roi_heads.mask_head.predictor.bias.fill_(1.0)
    path.mkdir(parents=True, exist_ok=True)
    DetectionCheckpointer(model, save_dir=str(path)).save("weights")
    return str(path / "weights.pth")


def _export(config: str, output: Path, sample: str, *opts: str) -> str:
    status = detectron2_export_tool.main(["--format", "onnx", "--config-file", config, "--output", str(output),
                                          "--sample-image", sample, *opts])
    assert status == 0
    return str(output / "model.onnx")


def assert_same_detections(expected, actual):
    assert len(expected["scores"]) > 0, "a comparison of no detections proves nothing"
    problem = compare_predictions(expected, actual)
    assert problem is None, problem
    if "pred_masks" in expected:
        assert expected["pred_masks"].any(axis=(1, 2)).mean() > 0.5, "most masks must be non-empty"


@pytest.fixture(scope="module")
def quickstart(work):
    """The quick start with random weights, exported by the tool: ``(opts, weights, model.onnx)``."""
    root, data, trace, _ = work
    opts = data + TEST_TIME
    weights = _random_detector(load_training_config(QUICKSTART, opts), root / "quickstart")
    opts = opts + ["MODEL.WEIGHTS", weights]
    return opts, weights, _export(QUICKSTART, root / "quickstart" / "export", trace, *opts)


@pytest.fixture(scope="module")
def bn_quickstart(work):
    """The quick start with BatchNorm (the paper configs' norm, which the fused backbone folds), exported."""
    root, data, trace, _ = work
    opts = data + TEST_TIME + ["MODEL.RESNETS.NORM", "BN"]
    weights = _random_detector(load_training_config(QUICKSTART, opts), root / "bn")
    return _export(QUICKSTART, root / "bn" / "export", trace, *opts, "MODEL.WEIGHTS", weights)


# ---------------------------------------------------------------- the runner's steps against detectron2's
@pytest.mark.parametrize("shape,short,longest", [((150, 200, 3), 128, 160), ((220, 140, 3), 128, 1333),
                                                 ((64, 64, 3), 192, 192), ((37, 301, 3), 800, 1333),
                                                 ((90, 60, 3), 0, 100)])
def test_resize_is_detectron2s(shape, short, longest):
    image = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
    expected = T.ResizeShortestEdge([short, short], longest).get_transform(image).apply_image(image)
    actual = onnx_runner.resize_shortest_edge(image, short, longest)
    assert actual.shape == expected.shape and np.array_equal(actual, expected)


def test_read_image_is_detectron2s(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((30, 50, 3)) * 255).astype(np.uint8)
    files = {"rgb.png": Image.fromarray(rgb), "grey.png": Image.fromarray(rgb[:, :, 0]),
             "rgba.png": Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])),
             "palette.png": Image.fromarray(rgb).convert("P")}
    for name, image in files.items():
        image.save(tmp_path / name)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees when shown
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    for name in list(files) + ["rotated.jpg"]:
        for fmt in ("RGB", "BGR"):
            expected = detectron2_read_image(str(tmp_path / name), format=fmt)
            actual = onnx_runner.read_image(str(tmp_path / name), fmt)
            assert actual.shape == expected.shape and np.array_equal(actual, expected), (name, fmt)
    assert onnx_runner.read_image(str(tmp_path / "rotated.jpg"), "RGB").shape == (50, 30, 3)


def test_paste_masks_is_detectron2s():
    rng = np.random.default_rng(0)
    masks = rng.random((7, 28, 28)).astype(np.float32)
    boxes = np.array([[10.3, 5.7, 60.2, 80.9], [-20, -10, 30, 25], [90, 70, 140, 120], [40.2, 40.7, 40.9, 41.1],
                      [0, 0, 100, 90], [33.3, 12.1, 34.0, 50.5], [5, 5, 95, 6]], dtype=np.float32)
    expected = paste_masks_in_image(torch.from_numpy(masks), Boxes(torch.from_numpy(boxes)), (90, 100)).numpy()
    actual = onnx_runner.paste_masks(masks, boxes, 90, 100)
    assert actual.shape == expected.shape == (7, 90, 100) and actual.dtype == bool
    assert expected.sum() > 1000
    assert (actual != expected).sum() <= 2  # float rounding at the 0.5 threshold, if at all


def test_compare_predictions_finds_each_difference():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 40, 50)) > 0.3
    base = {"pred_boxes": np.array([[1, 2, 30, 40], [5, 5, 20, 20], [10, 0, 40, 30]], np.float32),
            "scores": np.array([0.9, 0.5, 0.5], np.float32), "pred_classes": np.array([0, 1, 1]),
            "pred_masks": masks}
    assert compare_predictions(base, base) is None
    swapped = {k: v[[0, 2, 1]] for k, v in base.items()}  # tied scores in another order
    assert compare_predictions(base, swapped) is None
    fewer = {k: v[:2] for k, v in base.items()}
    boxes, scores, classes, holes = (dict(base) for _ in range(4))
    boxes["pred_boxes"] = base["pred_boxes"] + np.array([0, 0, 0.6, 0], np.float32)
    scores["scores"] = base["scores"] + np.float32(2e-4)
    classes["pred_classes"] = np.array([0, 1, 2])
    holes["pred_masks"] = masks.copy()
    holes["pred_masks"][0, :, :2] = ~masks[0, :, :2]  # about 4% of the first mask's pixels
    for changed, message in ((fewer, "2 detections instead of 3"), (boxes, "within 0.5 px"),
                             (scores, "within 0.5 px and 0.0001 of score"), (classes, "no detection of class 1"),
                             (holes, "IoU")):
        assert message in (compare_predictions(base, changed) or ""), message


# ---------------------------------------------------------------- every model kind
def _compare_with_default_predictor(cfg, weights: str, onnx: str, *image_files: str) -> None:
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    predictor, runner = DefaultPredictor(cfg), OnnxPredictor(onnx)
    for image_file in image_files:
        image = detectron2_read_image(image_file, format="BGR")  # DefaultPredictor's input: BGR, as cv2.imread
        expected = instances_to_numpy(predictor(image)["instances"])
        assert_same_detections(expected, runner(image))  # an array, BGR
        assert_same_detections(expected, runner(image_file))  # the file, read by the runner
        assert_same_detections(expected, runner(np.ascontiguousarray(image[:, :, ::-1]), input_format="RGB"))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_paper_configs_export_and_run_as_default_predictor(work, kind):
    root, _, trace, other = work
    config, opts = KINDS[kind]
    config, opts = str(CONFIGS / config), opts + TEST_TIME
    cfg = load_training_config(config, opts)
    weights = _random_detector(cfg, root / kind)
    onnx = _export(config, root / kind / "export", trace, *opts, "MODEL.WEIGHTS", weights)
    _compare_with_default_predictor(cfg, weights, onnx, other)


def test_quick_start_exports_and_runs_as_default_predictor(work, quickstart):
    opts, weights, onnx = quickstart
    cfg = load_training_config(QUICKSTART, opts)
    held_out = [r["file_name"] for r in DatasetCatalog.get("synthetic_shapes_val")]  # registered by the tool
    _compare_with_default_predictor(cfg, weights, onnx, work[3], *held_out)
    runner = OnnxPredictor(onnx)
    assert runner.class_names == ["circle", "square", "triangle"] and runner.input_format == "RGB"
    assert (runner.min_size_test, runner.max_size_test, runner.mask_threshold) == (128, 160, 0.5)


def test_lazy_quick_start_exports_and_runs_as_eager(work, quickstart):
    root, _, trace, other = work
    weights = quickstart[1]  # the LazyConfig quick start is the yaml one: same modules, same weights
    opts = [f"synthetic.root={root / 'data'}", "synthetic.num_train=2", "synthetic.num_val=3",
            "synthetic.image_size=96", "dataloader.test.mapper.augmentations.0.short_edge_length=128",
            "dataloader.test.mapper.augmentations.0.max_size=160",
            "model.roi_heads.box_predictor.test_score_thresh=0.0", "model.proposal_generator.pre_nms_topk=[1000,200]",
            "model.proposal_generator.post_nms_topk=[300,100]", f"train.init_checkpoint={weights}"]
    onnx = _export(LAZY_QUICKSTART, root / "lazy" / "export", trace, *opts)
    deployment = load_deployment(LAZY_QUICKSTART, opts)
    model = deployment.load_model()
    expected = eager_predict(model, detectron2_read_image(other, format="RGB"), 128, 160)
    assert_same_detections(expected, OnnxPredictor(onnx)(other))


def test_the_tools_check_fails_loudly_on_a_difference(work, quickstart):
    opts, _, onnx = quickstart
    deployment = load_deployment(QUICKSTART, opts)
    other = deployment.build_model()  # the same detector with other (initial) weights than the exported ones
    with pytest.raises(RuntimeError, match="differs from eager PyTorch on .*other.png: .*; .*model.onnx was written"):
        check_against_eager(onnx, other, deployment, work[3])


def test_every_detectron2_model_kind_is_covered():
    kinds = set()
    for path in CONFIGS.glob("*.yaml"):
        if path.name.startswith("Base-"):
            continue
        cfg = load_training_config(str(path))
        kinds.add((cfg.MODEL.ROI_HEADS.NAME, cfg.MODEL.MASK_ON))
    tested = {(load_training_config(str(CONFIGS / c)).MODEL.ROI_HEADS.NAME,
               load_training_config(str(CONFIGS / c)).MODEL.MASK_ON) for c, _ in KINDS.values()}
    assert kinds == tested


def test_no_detections_export_and_run(work):
    root, data, trace, other = work
    opts = data + TEST_TIME + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.0"]  # no score passes: an empty result
    weights = _random_detector(load_training_config(QUICKSTART, opts), root / "empty")
    onnx = _export(QUICKSTART, root / "empty" / "export", trace, *opts, "MODEL.WEIGHTS", weights)
    result = OnnxPredictor(onnx)(other)
    assert result["pred_boxes"].shape == (0, 4) and result["pred_masks"].shape == (0, 220, 140)


# ---------------------------------------------------------------- the graph
def test_backbone_is_fused_with_static_shapes(bn_quickstart):
    import onnx
    graph = onnx.load(bn_quickstart).graph
    constant = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in
                                                      n.output}
    backbone = [n for n in graph.node if n.name.startswith("/backbone/bottom_up/")]
    assert sum(n.op_type == "Conv" for n in backbone) >= 20
    assert not [n.name for n in backbone if n.op_type == "BatchNormalization"]
    assert not [n.name for n in backbone if n.op_type == "Split" and len(n.input) > 1 and n.input[1] not in constant]
    assert not [n.name for n in backbone if n.op_type == "Reshape" and n.input[1] not in constant]
    assert not [n.name for n in backbone if n.op_type == "Shape"]


def test_quick_start_graph_keeps_its_groupnorm(quickstart):
    """GroupNorm has no statistics to fold: the quick start's backbone exports convolutions and its norms."""
    import onnx
    graph = onnx.load(quickstart[2]).graph
    backbone = [n for n in graph.node if n.name.startswith("/backbone/bottom_up/")]
    assert sum(n.op_type == "Conv" for n in backbone) >= 20
    assert {n.op_type for n in backbone} & {"InstanceNormalization", "GroupNormalization"}
    assert not [n.name for n in backbone if n.op_type == "BatchNormalization"]
    assert graph.input[0].name == "image" and [o.name for o in graph.output] == [
        "pred_boxes", "pred_classes", "pred_masks", "scores", "image_size"]


# ---------------------------------------------------------------- as a user runs it
def test_tool_and_runner_as_commands(work, quickstart, tmp_path):
    opts, _, _ = quickstart
    result = subprocess.run([sys.executable, str(ROOT / "tools/export_detectron2.py"), "--format", "onnx",
                             "--config-file", QUICKSTART, "--output", str(tmp_path / "out"), *opts],
                            capture_output=True, text=True, timeout=600, cwd=str(tmp_path), env=CHECKOUT)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "matching eager PyTorch" in result.stdout + result.stderr
    onnx = tmp_path / "out" / "model.onnx"
    # The runner alone: torch and detectron2 cannot be imported in that process.
    script = ("import runpy, sys; sys.modules['torch'] = sys.modules['detectron2'] = None; "
              f"sys.argv = ['onnx_runner.py', {str(onnx)!r}, {work[3]!r}, '--score-threshold', '0']; "
              f"runpy.run_path({str(RUNNER)!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    expected = OnnxPredictor(str(onnx))(work[3])
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected["scores"]) > 0
    assert lines[0].split("\t")[1] in ("circle", "square", "triangle")


def test_evaluation_beside_pytorch(quickstart, tmp_path, capsys):
    opts, _, onnx = quickstart
    status = detectron2_onnx_eval.main(["--config-file", QUICKSTART, "--onnx", onnx, "--output", str(tmp_path),
                                        *opts])
    assert status == 0
    out = capsys.readouterr().out
    assert "bbox AP: ONNX" in out and "segm AP: ONNX" in out and "PyTorch" in out
    results = json.loads((tmp_path / "onnx_eval_results.json").read_text())
    assert set(results) == {"onnx", "pytorch"} and set(results["onnx"]) == {"bbox", "segm"}
    # The evaluator saw the same detections from both (COCO json of every image: class, box, score).
    onnx_json, torch_json = (json.loads((tmp_path / k / "coco_instances_results.json").read_text())
                             for k in ("onnx", "pytorch"))
    assert len(onnx_json) == len(torch_json) > 0
    for a, b in zip(sorted(onnx_json, key=_key), sorted(torch_json, key=_key)):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        assert np.abs(np.array(a["bbox"]) - np.array(b["bbox"])).max() < 0.5 and abs(a["score"] - b["score"]) < 1e-4


def _key(record):
    return record["image_id"], record["category_id"], round(record["score"], 3), [round(v) for v in record["bbox"]]


# ---------------------------------------------------------------- bad input
def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _tool(capsys, *argv) -> str:
    status = detectron2_export_tool.main(list(argv))
    message = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(message) == 2 and "--debug" in message[1], message
    return message[0]


def test_export_refuses_a_training_model(quickstart):
    opts, weights, _ = quickstart
    model = build_model(load_training_config(QUICKSTART, opts)).train()
    with pytest.raises(ValueError, match=r"eval mode: call model.eval\(\)"):
        export_onnx(model, torch.rand(3, 64, 64), "unused.onnx", {})
    assert not Path("unused.onnx").exists()


def test_export_refuses_bad_input(work, quickstart, capsys, tmp_path):
    opts, weights, _ = quickstart
    trace = work[2]
    named_as_output = tmp_path / "weights" / "model.onnx"  # weights where the export would write, even with the flag
    named_as_output.parent.mkdir()
    named_as_output.write_bytes(Path(weights).read_bytes())
    backbone_only = tmp_path / "resnest14.pth"  # an ImageNet-style backbone checkpoint (official layout)
    torch.save(build_model(load_training_config(QUICKSTART, opts)).backbone.bottom_up.state_dict(), backbone_only)
    digests = {path: _digest(path) for path in (weights, named_as_output)}
    base = ["--format", "onnx", "--config-file", QUICKSTART, "--sample-image", trace]
    out = str(tmp_path / "out")
    rows = [  # (argv, fragment of the one-line message)
        (base + ["--output", weights, *opts], "is the input file"),
        (base + ["--output", str(named_as_output.parent), "--overwrite", *opts[:-2], "MODEL.WEIGHTS",
                 str(named_as_output)], "is the input file"),
        (base + ["--output", out, *opts, "MODEL.ROI_HEADS.NUM_CLASSES", "5"], "does not match the config"),
        (base + ["--output", out, *opts[:-2]], "MODEL.WEIGHTS is empty"),
        (base + ["--output", out, *opts[:-2], "MODEL.WEIGHTS", str(backbone_only)], "backbone weights only"),
        (base + ["--output", out, "--opset", "11", *opts], "--opset 11: use 16"),
        (base + ["--output", out, "--export-method", "scripting", *opts], "exports by --export-method tracing"),
        (["--config-file", QUICKSTART, "--output", out, *opts], "needs --export-method"),
    ]
    for argv, fragment in rows:
        assert fragment in _tool(capsys, *argv), argv
    assert all(_digest(path) == digest for path, digest in digests.items())
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_export_never_overwrites_without_the_flag(work, quickstart, capsys, tmp_path):
    opts, _, onnx = quickstart
    output = Path(onnx).parent
    digest = _digest(onnx)
    assert "pass --overwrite" in _tool(capsys, "--format", "onnx", "--config-file", QUICKSTART, "--output",
                                       str(output), "--sample-image", work[2], *opts)
    assert _digest(onnx) == digest


def test_export_without_onnxruntime(work, quickstart, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without it does on import
    message = _tool(capsys, "--format", "onnx", "--config-file", QUICKSTART, "--output", "unused", *quickstart[0])
    assert "pip install onnxruntime" in message


def _one_node_model(path: Path, op: str, dtype, domain: str = "") -> str:
    import onnx
    from onnx import helper
    x, y = (helper.make_tensor_value_info(name, dtype, [2]) for name in "xy")
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], domain=domain)], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return str(path)


def test_runner_bad_input(quickstart, tmp_path):
    from onnx import TensorProto
    # Ops ONNX Runtime cannot run: a valid op on a type it has no kernel for, an unknown op, another domain's op.
    for op, dtype, domain, name in (("Relu", TensorProto.INT16, "", "Relu"),
                                    ("FancyOp", TensorProto.FLOAT, "", "FancyOp"),
                                    ("FancyOp", TensorProto.FLOAT, "com.example", "com.example:FancyOp")):
        path = _one_node_model(tmp_path / f"{op}{domain}.onnx", op, dtype, domain)
        with pytest.raises(RuntimeError, match=f"cannot run op {name} of .*: export again with another --opset"):
            OnnxPredictor(path)
    _one_node_model(tmp_path / "plain.onnx", "Relu", TensorProto.FLOAT)
    with pytest.raises(ValueError, match="has no 'resnest_backbones.detectron2' metadata"):
        OnnxPredictor(str(tmp_path / "plain.onnx"))
    with pytest.raises(FileNotFoundError, match="No ONNX model at"):
        OnnxPredictor(str(tmp_path / "missing.onnx"))
    runner = OnnxPredictor(quickstart[2])
    with pytest.raises(ValueError, match="HxWx3 uint8 array"):
        runner(np.zeros((20, 30, 3), np.float32))
    with pytest.raises(ValueError, match="input_format must be one of"):
        runner(np.zeros((20, 30, 3), np.uint8), input_format="YUV")


def test_runner_without_onnxruntime(quickstart):
    script = ("import runpy, sys; sys.modules['onnxruntime'] = None; "
              f"sys.argv = ['onnx_runner.py', {quickstart[2]!r}, 'image.png']; "
              f"runpy.run_path({str(RUNNER)!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == ("onnx_runner: error: Running an ONNX model needs onnxruntime, which is not "
                                     "installed: pip install onnxruntime")


def test_small_masks_may_differ_by_float_rounding_at_the_threshold_only():
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:12, 5:12] = True  # 49 pixels: one flipped pixel is IoU 0.98
    one, three = mask.copy(), mask.copy()
    one[12, 5] = True
    three[12, 5:8] = True
    big = np.zeros((200, 200), dtype=bool)
    big[:100, :100] = True
    shifted = np.roll(big, 1, axis=0)  # one row down: 200 pixels apart, IoU 0.98
    assert masks_agree(mask, one) and not masks_agree(mask, three) and not masks_agree(big, shifted)
