"""mmdet / mmseg models to ONNX through mmdeploy (tools/deploy_openmmlab.py, tools/test_openmmlab_onnx.py).

Tiny versions (ResNeSt-14, BN, narrow heads, random weights) of the mmdet quick start, the Faster / Cascade / Mask
R-CNN paper configs and the DeepLabV3 / PSPNet / DeepLabV3+ paper configs are exported with the shipped deploy
configs (static and dynamic), run by a plain ONNX Runtime session and compared with the PyTorch model per image
(the same classes, boxes within 0.5 px, scores within 1e-4, mask IoU >= 0.99, logits within 1e-4 relative). The
tools run as users run them; the bad inputs get one-line errors and leave the checkpoint as it was. Real mmdeploy,
mmdet, mmseg, mmcv ops and onnxruntime; a missing one fails the tests.
"""
import collections
import hashlib
import json
import os
import subprocess
import sys

import mmdeploy  # noqa: F401  required, never skipped
import onnx
import pytest
import torch
from mmengine.config import Config

import resnest_backbones
from mim_helpers import mim, read_test_metrics
from openmmlab_deploy_helpers import (build, detection_differences, prepare, run_onnx, tiny_detector,
                                      tiny_segmentor)
from resnest_backbones.apps import openmmlab_deploy, openmmlab_onnx, openmmlab_onnx_eval
from resnest_backbones.datasets import make_synthetic_dataset
from resnest_backbones.datasets.synthetic_semantic import make_ade20k_layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETECTION = "mmdeploy/mmdet/detection_onnxruntime_{}.py"
INSTANCE = "mmdeploy/mmdet/instance-seg_onnxruntime_{}.py"
SEGMENTATION = "mmdeploy/mmseg/segmentation_onnxruntime_{}.py"
QUICKSTART_DET = "mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py"
QUICKSTART_SEG = "resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Held-out images of the synthetic shapes (128 px) and ADE20K-layout (128x128) datasets."""
    root = tmp_path_factory.mktemp("deploy_data")
    make_synthetic_dataset(str(root / "shapes"), num_train=1, num_val=3, image_size=128)
    make_ade20k_layout(str(root / "ade"), num_train=1, num_val=3)
    images = lambda folder: sorted(str(p) for p in folder.iterdir())  # noqa: E731
    return dict(root=root, shapes=images(root / "shapes" / "images" / "val"),
                ade=images(root / "ade" / "images" / "validation"))


def _save(folder, cfg: Config, model) -> tuple:
    """The config and the model's weights as files, as a user has them after training."""
    os.makedirs(folder, exist_ok=True)
    cfg_path, checkpoint = os.path.join(folder, "model_cfg.py"), os.path.join(folder, "model.pth")
    cfg.dump(cfg_path)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    return cfg_path, checkpoint


_EXPORTS = {}  # config name -> (cfg, model, model config file, checkpoint, ONNX file): one export per module


def _exported(factory, name: str, cfg: Config, deploy_cfg: str, image: str):
    """``tools/deploy_openmmlab.py``'s function on a tiny model of ``cfg``: export, its own check against PyTorch
    on ``image``, the drawings. Cached, so that the other tests of the module reuse the file."""
    if name not in _EXPORTS:
        model = build(cfg)
        folder = str(factory.mktemp("deploy"))
        cfg_path, checkpoint = _save(folder, cfg, model)
        work_dir = os.path.join(folder, "onnx")
        path = openmmlab_deploy.deploy(resnest_backbones.config_path(deploy_cfg), cfg_path, checkpoint, image,
                                       work_dir)
        assert path == os.path.join(work_dir, "end2end.onnx")
        assert any(name.startswith("output_onnxruntime") for name in os.listdir(work_dir))  # mmdeploy's drawings
        _EXPORTS[name] = (cfg, model, cfg_path, checkpoint, path)
    return _EXPORTS[name]


def test_fused_backbone_follows_conversions_and_traces():
    """``fast_inference=True``: the fused copy made at the first eval forward follows ``.to()`` (mmdeploy calls
    ``.cpu()`` right before tracing), and tracing takes it as constants (it requires no grad)."""
    from resnest_backbones.mmdet import MMDetResNeStBackbone as ResNeStBackbone
    torch.manual_seed(0)
    fast = ResNeStBackbone(variant="resnest14", fast_inference=True).eval()
    plain = ResNeStBackbone(variant="resnest14").eval()
    plain.load_state_dict(fast.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        fast(x)  # makes the fused copy
        fast.double().cpu()
        outputs, expected = fast(x.double()), plain.double()(x.double())
        assert all(o.dtype == torch.float64 and torch.allclose(o, e, rtol=1e-6, atol=1e-6)
                   for o, e in zip(outputs, expected))
        traced = torch.jit.trace(fast.cpu(), (x.double(),), check_trace=False)
        assert all(torch.allclose(t, e, rtol=1e-6, atol=1e-6) for t, e in zip(traced(x.double()), expected))


DETECTORS = [  # (config, deploy config, static or dynamic)
    (QUICKSTART_DET, INSTANCE, "static"),
    ("faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py", DETECTION, "dynamic"),
    ("cascade-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py", DETECTION, "static"),
    ("mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py", INSTANCE, "dynamic"),
    ("cascade-mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py", INSTANCE, "dynamic"),
]


@pytest.mark.parametrize("name, deploy_cfg, shape", DETECTORS)
def test_detector_matches_pytorch(tmp_path_factory, data, name, deploy_cfg, shape):
    """The paper configs' test size (scaled down) is no multiple of their pad_size_divisor: the exported graph pads
    the image itself and clips boxes to the image, as mmdet does."""
    cfg, model, _, _, path = _exported(tmp_path_factory, name, tiny_detector(name), deploy_cfg.format(shape),
                                       data["shapes"][0])
    # Another image, and for dynamic exports another input size.
    for scale in [None] + ([(160, 112)] if shape == "dynamic" else []):
        image = data["shapes"][1]
        inputs, samples = prepare(cfg, model, image, scale)
        with torch.no_grad():
            reference = model.predict(inputs, samples, rescale=False)[0].pred_instances
        # The exported detector takes the image unpadded and pads it itself (mmdeploy_rewriters).
        outputs = run_onnx(path, prepare(cfg, model, image, scale, pad=False)[0])
        assert len(reference) > 0  # random heads that detect: the comparison has something to compare
        differences = detection_differences(reference, *outputs)
        assert differences["box"] <= 0.5 and differences["score"] <= 1e-4 and differences["mask_iou"] >= 0.99, \
            differences
        assert ("masks" in reference) == (len(outputs) == 3)


SEGMENTORS = [
    ("resnest_s50-d8_deeplabv3_4xb4-160k_ade20k-512x512.py", "static"),
    # Dynamic, with a second size whose features (10x10) are no multiple of the pyramid's 3x3 and 6x6 cells.
    ("resnest_s101-d8_pspnet_4xb4-160k_ade20k-512x512.py", "dynamic"),
    ("resnest_s101-d8_deeplabv3plus_4xb4-160k_ade20k-512x512.py", "dynamic"),
]


@pytest.mark.parametrize("name, shape", SEGMENTORS)
def test_segmentor_matches_pytorch(tmp_path_factory, data, name, shape):
    cfg, model, _, _, path = _exported(tmp_path_factory, name, tiny_segmentor(name), SEGMENTATION.format(shape),
                                       data["ade"][0])
    other_size = (128, 80)
    for scale in [None] + ([other_size] if shape == "dynamic" else []):
        inputs, samples = prepare(cfg, model, data["ade"][1], scale)
        with torch.no_grad():
            reference = model.inference(inputs, [sample.metainfo for sample in samples])
        logits = torch.from_numpy(run_onnx(path, inputs)[0])
        assert logits.shape == reference.shape and logits.shape[1] == 5
        assert ((logits - reference).abs().max() / reference.abs().max()).item() <= 1e-4
    if shape == "static":  # a fixed input size, refused by ONNX Runtime for another one
        with pytest.raises(Exception, match="(?i)invalid dimensions"):
            run_onnx(path, prepare(cfg, model, data["ade"][1], other_size)[0])


def _tool(script: str, args, cwd, env) -> subprocess.CompletedProcess:
    """``python tools/<script> args`` as a user runs it, from another directory."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", script), *map(str, args)], cwd=cwd,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


def test_tools_as_a_user_runs_them(tmp_path, data, monkeypatch):
    """The mmseg quick start: the deploy tool, then the evaluation tool, each a process of its own started from
    another directory; the ONNX model's metrics on the held-out images equal the PyTorch model's from ``mim test``;
    the backbone went into the graph fused (the plain split attention's transposes, one per block, are gone)."""
    env = dict(RESNEST_ADE20K_ROOT=str(data["root"] / "ade"), PYTHONPATH=ROOT)
    monkeypatch.setenv("RESNEST_ADE20K_ROOT", env["RESNEST_ADE20K_ROOT"])
    config = resnest_backbones.config_path(f"mmseg/{QUICKSTART_SEG}")
    cfg = Config.fromfile(config)
    model = build(cfg)
    _, checkpoint = _save(str(tmp_path / "train"), cfg, model)
    deploy_cfg = resnest_backbones.config_path(SEGMENTATION.format("dynamic"))
    work_dir = tmp_path / "onnx"
    done = _tool("deploy_openmmlab.py", [deploy_cfg, config, checkpoint, data["ade"][0], "--test-img", data["ade"][1],
                                         "--work-dir", work_dir, "--device", "cpu"], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ONNX Runtime = PyTorch within the tolerances") == 2
    done = _tool("test_openmmlab_onnx.py", [deploy_cfg, config, work_dir / "end2end.onnx", "--work-dir", work_dir],
                 tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(work_dir / "onnx_metrics.json") as handle:
        onnx_metrics = json.load(handle)["metrics"]
    mim("test", "mmseg", config, str(tmp_path / "pytorch"), [], env, checkpoint=checkpoint)
    pytorch_metrics = read_test_metrics(str(tmp_path / "pytorch"))
    assert set(onnx_metrics) == {"aAcc", "mIoU", "mAcc"} and 0 < pytorch_metrics["mIoU"] < 100
    for key, value in onnx_metrics.items():
        assert abs(value - pytorch_metrics[key]) <= 0.3, (key, value, pytorch_metrics[key])
    # The same model exported as configured (plain backbone), for the fused-graph check.
    from mmdeploy.apis import build_task_processor
    deploy_config, _ = openmmlab_onnx.load_configs(deploy_cfg, config)
    plain = str(tmp_path / "plain.onnx")
    openmmlab_deploy.export_onnx(model, build_task_processor(cfg, deploy_config, "cpu"), data["ade"][0], plain)
    transposes = [collections.Counter(n.op_type for n in onnx.load(p).graph.node)["Transpose"]
                  for p in (plain, str(work_dir / "end2end.onnx"))]
    assert transposes[0] >= 4 and transposes[1] < transposes[0], transposes


def test_mmdet_evaluation_equals_pytorch(tmp_path_factory, tmp_path, data, capsys):
    """The mmdet quick start's ONNX model evaluated with its CocoMetric (bbox and segm) by the evaluation tool's
    command line gives the PyTorch model's metrics (``mim test``) on the same held-out images."""
    cfg, _, cfg_path, checkpoint, path = _exported(tmp_path_factory, QUICKSTART_DET, tiny_detector(QUICKSTART_DET),
                                                   INSTANCE.format("static"), data["shapes"][0])
    root = str(data["root"] / "shapes") + "/"
    options = [f"{loader}.dataset.data_root={root}" for loader in ("test_dataloader", "val_dataloader")] + \
        [f"{evaluator}.ann_file={root}annotations/instances_val.json" for evaluator in ("test_evaluator",
                                                                                         "val_evaluator")]
    status = openmmlab_onnx_eval.main([resnest_backbones.config_path(INSTANCE.format("static")), cfg_path, path,
                                       "--work-dir", str(tmp_path / "onnx"), "--cfg-options", *options])
    assert status == 0, capsys.readouterr().err
    with open(tmp_path / "onnx" / "onnx_metrics.json") as handle:
        onnx_metrics = json.load(handle)["metrics"]
    mim("test", "mmdet", cfg_path, str(tmp_path / "pytorch"), options, dict(PYTHONPATH=ROOT), checkpoint=checkpoint)
    pytorch_metrics = read_test_metrics(str(tmp_path / "pytorch"))
    assert {"coco/bbox_mAP", "coco/segm_mAP"} <= set(onnx_metrics)
    for key, value in onnx_metrics.items():
        assert abs(value - pytorch_metrics[key]) <= 0.003, (key, value, pytorch_metrics[key])  # mAP in [0, 1]


# ---- bad inputs: one line that names the input and the fix; the weights file is never written


def _digest(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _main_error(argv, capsys) -> str:
    """The deploy tool's one-line error (exit status 1, no traceback)."""
    assert openmmlab_deploy.main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    # The message and the --debug hint, after whatever the frameworks warned while they were first imported.
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if ": error: " in line)
    assert "Traceback" not in err and lines[start + 1:] == ["(run with --debug to see the traceback)"], err
    return lines[start][lines[start].index(": error: ") + len(": error: "):]


@pytest.fixture(scope="module")
def quickstart_seg(tmp_path_factory, data):
    """The mmseg quick start's config file (data in the test's folder) and a checkpoint of it."""
    cfg = Config.fromfile(resnest_backbones.config_path(f"mmseg/{QUICKSTART_SEG}"))
    cfg.test_dataloader.dataset.data_root = str(data["root"] / "ade")
    return _save(str(tmp_path_factory.mktemp("quickstart_seg")), cfg, build(cfg))


def test_bad_training_mode(tmp_path, data):
    cfg = tiny_segmentor(SEGMENTORS[0][0])
    from mmdeploy.apis import build_task_processor
    deploy_cfg, _ = openmmlab_onnx.load_configs(resnest_backbones.config_path(SEGMENTATION.format("static")),
                                                _save(str(tmp_path), cfg, build(cfg))[0])
    processor = build_task_processor(cfg, deploy_cfg, "cpu")
    model = build(cfg).train()
    with pytest.raises(ValueError, match=r"training mode .*call model\.eval\(\) before exporting"):
        openmmlab_deploy.export_onnx(model, processor, data["ade"][0], str(tmp_path / "end2end.onnx"))
    assert not (tmp_path / "end2end.onnx").exists()


def test_bad_checkpoint_of_another_config(tmp_path, data, capsys, quickstart_seg):
    cfg_path, _ = quickstart_seg
    other = tiny_segmentor(SEGMENTORS[2][0])  # DeepLabV3+: other heads, other widths
    _, checkpoint = _save(str(tmp_path / "other"), other, build(other))
    before = _digest(checkpoint)
    line = _main_error([resnest_backbones.config_path(SEGMENTATION.format("static")), cfg_path, checkpoint,
                        data["ade"][0], "--work-dir", tmp_path / "onnx"], capsys)
    assert checkpoint in line and "does not match the model of" in line and "missing keys" in line
    assert "pass the checkpoint trained with this config" in line
    assert _digest(checkpoint) == before and not (tmp_path / "onnx" / "end2end.onnx").exists()


@pytest.mark.parametrize("link", [False, True], ids=["same path", "symlink"])
def test_bad_output_is_the_weights_file(tmp_path, data, capsys, quickstart_seg, link):
    cfg_path, checkpoint = quickstart_seg
    work_dir = tmp_path / "onnx"
    work_dir.mkdir()
    target = work_dir / "end2end.onnx"
    if link:  # the output path reaches the weights through a link
        target.symlink_to(checkpoint)
        weights = checkpoint
    else:  # the weights were saved under the name the export writes
        weights = str(target)
        target.write_bytes(open(checkpoint, "rb").read())
    before = _digest(weights)
    line = _main_error([resnest_backbones.config_path(SEGMENTATION.format("static")), cfg_path, target,
                        data["ade"][0], "--work-dir", work_dir], capsys)
    assert "is the input file" in line and "(CHECKPOINT)" in line and "choose another output path" in line
    assert _digest(weights) == before


def test_bad_operator_the_runtime_cannot_run(tmp_path, data):
    """PSANet's PSAMask exports to mmcv's own operator, which ONNX Runtime has no kernel for."""
    cfg = Config.fromfile(resnest_backbones.config_path(f"mmseg/{QUICKSTART_SEG}"))
    cfg.model.decode_head = dict(
        type="PSAHead", in_channels=2048, in_index=3, channels=16, mask_size=(8, 8), psa_type="collect",
        compact=False, shrink_factor=2, normalization_factor=1.0, psa_softmax=True, num_classes=5,
        norm_cfg=dict(type="BN", requires_grad=True), loss_decode=dict(type="CrossEntropyLoss"))
    cfg.test_pipeline[1].scale = (64, 64)  # 8x8 features, the mask size (tracing PSAMask is slow)
    cfg_path, checkpoint = _save(str(tmp_path), cfg, build(cfg))
    with pytest.raises(openmmlab_onnx.DeployError) as raised:
        openmmlab_deploy.deploy(resnest_backbones.config_path(SEGMENTATION.format("static")), cfg_path, checkpoint,
                                data["ade"][0], str(tmp_path / "onnx"))
    message = str(raised.value)
    assert "\n" not in message and "ONNX Runtime cannot run" in message and "mmcv::MMCVPSAMask" in message
    assert "deploy a model without the layers that export to them" in message


@pytest.mark.parametrize("module", ["onnxruntime", "mmdeploy"])
def test_bad_missing_package(tmp_path, data, capsys, monkeypatch, quickstart_seg, module):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` finds when the package is not installed
    cfg_path, checkpoint = quickstart_seg
    line = _main_error([resnest_backbones.config_path(SEGMENTATION.format("static")), cfg_path, checkpoint,
                        data["ade"][0], "--work-dir", tmp_path], capsys)
    assert f"{module} is not installed" in line and "bash tools/setup_env.sh" in line


def test_bad_options_and_configs(tmp_path, data, capsys, quickstart_seg):
    cfg_path, checkpoint = quickstart_seg
    deploy_cfg = resnest_backbones.config_path(SEGMENTATION.format("static"))
    common = [cfg_path, checkpoint, data["ade"][0], "--work-dir", tmp_path / "onnx"]
    tensorrt = tmp_path / "tensorrt.py"
    tensorrt.write_text(f"_base_ = [{deploy_cfg!r}]\nbackend_config = dict(type='tensorrt')\n")
    assert "deploys to 'tensorrt'" in _main_error([tensorrt, *common], capsys)
    assert "--device cuda:0" in _main_error([deploy_cfg, *common, "--device", "cuda:0"], capsys)
    assert "int8" in _main_error([deploy_cfg, *common, "--calib-dataset-cfg", cfg_path], capsys)
    assert "SDK" in _main_error([deploy_cfg, *common, "--dump-info"], capsys)
    assert "does not exist" in _main_error([deploy_cfg, cfg_path, tmp_path / "missing.pth", data["ade"][0]], capsys)
    assert not (tmp_path / "onnx").exists()


def test_bad_static_file_on_other_image_sizes(tmp_path_factory, tmp_path, data, capsys):
    """The evaluation tool on images the static graph does not take says to export with a dynamic config."""
    name = SEGMENTORS[0][0]
    _, _, cfg_path, _, path = _exported(tmp_path_factory, name, tiny_segmentor(name), SEGMENTATION.format("static"),
                                        data["ade"][0])
    status = openmmlab_onnx_eval.main([
        resnest_backbones.config_path(SEGMENTATION.format("static")), cfg_path, path, "--work-dir", str(tmp_path),
        "--cfg-options", f"test_dataloader.dataset.data_root={data['root'] / 'ade'}",
        "test_dataloader.dataset.pipeline.1.scale=(128,80)"])
    err = capsys.readouterr().err
    assert status == 1 and "static input size" in err and "_dynamic.py deploy config" in err, err


def test_bad_nms_without_onnx_operator(tmp_path, data):
    """mmdet's soft-NMS has no ONNX operator: refused at export, naming the key."""
    cfg = tiny_detector(DETECTORS[1][0])
    cfg.model.test_cfg.rcnn.nms = dict(type="soft_nms", iou_threshold=0.5)
    model = build(cfg)
    from mmdeploy.apis import build_task_processor
    deploy_cfg, _ = openmmlab_onnx.load_configs(resnest_backbones.config_path(DETECTION.format("static")),
                                                _save(str(tmp_path), cfg, model)[0])
    with pytest.raises(ValueError, match=r"model\.test_cfg\.rcnn\.nms\.type='soft_nms' has no ONNX operator"):
        openmmlab_deploy.export_onnx(model, build_task_processor(cfg, deploy_cfg, "cpu"), data["shapes"][0],
                                     str(tmp_path / "end2end.onnx"))
    assert not (tmp_path / "end2end.onnx").exists()


def test_detection_masks_may_differ_by_float_rounding_at_the_threshold_only():
    """The OpenMMLab check applies the detectron2 check's mask rule (``onnx_tolerances.masks_agree``)."""
    from mmengine.structures import InstanceData
    masks = torch.zeros(1, 20, 20, dtype=torch.bool)
    masks[0, 5:12, 5:12] = True  # 49 pixels: one flipped pixel is IoU 0.98
    reference = InstanceData(bboxes=torch.tensor([[5.0, 5.0, 12.0, 12.0]]), labels=torch.tensor([1]),
                             scores=torch.tensor([0.9]), masks=masks)
    one, three = reference.clone(), reference.clone()
    one.masks, three.masks = masks.clone(), masks.clone()
    one.masks[0, 12, 5] = True
    three.masks[0, 12, 5:8] = True
    assert openmmlab_onnx.compare_detections(reference, one) == []
    assert openmmlab_onnx.compare_detections(reference, three) == ["detection 0: mask IoU 0.9423 < 0.99"]
