"""detectron2 adapter: shipped configs build and run, backbone contract, FREEZE_AT / norms, weights, bad input.

Real detectron2 on CPU, no mocks. These tests fail (not skip) when detectron2 is missing.
"""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import ROOT, randomize_norms

import resnest_backbones.detectron2 as rd2  # noqa: E402  (fails the module if detectron2 is missing)
from resnest_backbones.apps.detectron2_train import load_training_config  # noqa: E402
from detectron2.layers import FrozenBatchNorm2d as D2FrozenBN  # noqa: E402
from detectron2.layers import NaiveSyncBatchNorm, ShapeSpec  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model  # noqa: E402
from detectron2.modeling.backbone.resnet import build_resnet_backbone  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402

from resnest_backbones import CheckpointMismatchError, FrozenBatchNorm2d, create_model, load_pretrained  # noqa: E402
from resnest_backbones.keymaps import from_official  # noqa: E402

CONFIG_DIR = ROOT / "configs" / "detectron2"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("Base-"))
# BN, as the published checkpoints these tests load (the quick start itself normalises with GN).
SMALL = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.RESNEST.VARIANT", "resnest14", "MODEL.RESNETS.NORM", "BN"]


def small_cfg(*opts, config="quickstart_mask_rcnn_s14_synthetic.yaml"):
    return load_training_config(str(CONFIG_DIR / config), list(SMALL) + list(opts))


def test_registered():
    for name in ("build_resnest_backbone", "build_resnest_fpn_backbone", "build_retinanet_resnest_fpn_backbone"):
        assert BACKBONE_REGISTRY.get(name) is not None


def test_configs_are_complete():
    expected = {"faster_rcnn_s50", "faster_rcnn_s101", "cascade_rcnn_s50", "cascade_rcnn_s101", "cascade_rcnn_s200",
                "mask_rcnn_s50", "mask_rcnn_s101", "cascade_mask_rcnn_s50", "cascade_mask_rcnn_s101"}
    coco = {n.split("_fpn")[0] for n in CONFIGS if n.endswith("_coco.yaml")}
    assert coco == expected
    assert any(n.endswith("lvis_v1.yaml") for n in CONFIGS)
    for path in CONFIG_DIR.glob("*.yaml"):  # self-contained: _BASE_ only to our own files
        for line in path.read_text().splitlines():
            if line.startswith("_BASE_"):
                assert (CONFIG_DIR / line.split(":", 1)[1].strip().strip('"')).exists(), (path.name, line)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_infers(name):
    """Every shipped config: its architecture matches its name, it builds on CPU and detects on a random image."""
    cfg = load_training_config(str(CONFIG_DIR / name), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
                                                    "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
                                                    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                                                    "TEST.DETECTIONS_PER_IMAGE", "10",
                                                    # residual branches start at zero: a 200-layer random network
                                                    # in eval mode otherwise overflows and detects nothing
                                                    "MODEL.RESNEST.LAST_GAMMA", "True"]
                          # fewer proposals: LVIS' 1203 classes x 1000 boxes is slow on CPU
                          + (["MODEL.RPN.POST_NMS_TOPK_TEST", "200"] if "lvis" in name else []))
    depth = name.split("_s", 1)[1].split("_")[0]
    assert cfg.MODEL.RESNEST.VARIANT == f"resnest{depth}"
    assert cfg.MODEL.MASK_ON == ("mask" in name)
    assert (cfg.MODEL.ROI_HEADS.NAME == "CascadeROIHeads") == ("cascade" in name)
    if "quickstart" not in name:
        assert cfg.MODEL.WEIGHTS == "" and cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.RESNETS.NORM == "SyncBN"
        assert cfg.MODEL.ROI_BOX_HEAD.NUM_CONV == 4 and cfg.MODEL.ROI_BOX_HEAD.NUM_FC == 1
        assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (640, 800) and cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range"
        assert rd2.load_config(str(CONFIG_DIR / name)).MODEL.WEIGHTS == f"resnest://resnest{depth}"
    torch.manual_seed(0)  # random weights: fixed, so the detection count below is reproducible
    model = build_model(cfg).eval()
    assert rd2.find_resnest(model)[0] == "backbone.bottom_up."
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 96, 120) * 255, "height": 96, "width": 120}])
    instances = out[0]["instances"]
    assert len(instances) > 0 and instances.image_size == (96, 120)
    assert instances.has("pred_masks") == cfg.MODEL.MASK_ON


def test_fpn_strides_and_channels():
    cfg = small_cfg("MODEL.FPN.OUT_CHANNELS", "64")
    fpn = build_backbone(cfg, ShapeSpec(channels=3)).eval()
    shapes = fpn.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "p2": (64, 4), "p3": (64, 8), "p4": (64, 16), "p5": (64, 32), "p6": (64, 64)}
    assert fpn.size_divisibility == 32
    with torch.no_grad():
        out = fpn(torch.rand(1, 3, 128, 192))
    for key, value in out.items():
        assert value.shape == (1, 64, 128 // shapes[key].stride, 192 // shapes[key].stride), key
    bottom = fpn.bottom_up.output_shape()
    assert {k: (v.channels, v.stride) for k, v in bottom.items()} == {
        "res2": (256, 4), "res3": (512, 8), "res4": (1024, 16), "res5": (2048, 32)}


def test_retinanet_fpn_has_p6_p7_from_res5():
    cfg = small_cfg("MODEL.BACKBONE.NAME", "build_retinanet_resnest_fpn_backbone", "MODEL.FPN.OUT_CHANNELS", "32",
                    "MODEL.RESNETS.OUT_FEATURES", "['res3', 'res4', 'res5']",
                    "MODEL.FPN.IN_FEATURES", "['res3', 'res4', 'res5']")
    fpn = build_backbone(cfg, ShapeSpec(channels=3)).eval()
    assert {k: v.stride for k, v in fpn.output_shape().items()} == {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}
    with torch.no_grad():
        assert fpn(torch.rand(1, 3, 128, 128))["p7"].shape == (1, 32, 1, 1)


def test_res5_dilation_and_out_features():
    backbone = build_backbone(small_cfg("MODEL.BACKBONE.NAME", "build_resnest_backbone",
                                        "MODEL.RESNETS.RES5_DILATION", "2"), ShapeSpec(channels=3)).eval()
    assert backbone.output_shape()["res5"].stride == 16
    assert backbone(torch.rand(1, 3, 64, 64))["res5"].shape[-1] == 4
    partial = build_backbone(small_cfg("MODEL.BACKBONE.NAME", "build_resnest_backbone",
                                       "MODEL.RESNETS.OUT_FEATURES", "['res3', 'res4']"), ShapeSpec(channels=3)).eval()
    assert set(partial(torch.rand(1, 3, 64, 64))) == {"res3", "res4"}
    assert partial.layer4 is None, "res5 is not an output, so it must not be built (DDP unused params)"


def _stage_of(name: str) -> str:
    top = name.split(".", 1)[0]
    if top in ("stem", "conv1", "bn1"):
        return "stem"
    return {"layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}.get(top, top)


def _freeze_pattern(backbone: nn.Module):
    """{stage: (all params trainable?, number of FrozenBN modules)} for a detectron2 ResNet or our ResNeSt."""
    pattern = {}
    for name, param in backbone.named_parameters():
        stage = _stage_of(name)
        pattern.setdefault(stage, [True, 0])
        pattern[stage][0] &= param.requires_grad
    for name, module in backbone.named_modules():
        if isinstance(module, (D2FrozenBN, FrozenBatchNorm2d)):
            stage = _stage_of(name)
            pattern.setdefault(stage, [True, 0])
            pattern[stage][1] += 1
    return {stage: (trainable, frozen_bn > 0) for stage, (trainable, frozen_bn) in pattern.items()}


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 5])
def test_freeze_at_matches_detectron2_resnet(freeze_at):
    opts = ["MODEL.BACKBONE.FREEZE_AT", str(freeze_at), "MODEL.RESNETS.NORM", "BN",
            "MODEL.RESNETS.DEPTH", "50"]
    theirs = _freeze_pattern(build_resnet_backbone(small_cfg(*opts), ShapeSpec(channels=3)))
    ours = _freeze_pattern(rd2.build_resnest_backbone(small_cfg(*opts), ShapeSpec(channels=3)))
    assert ours == theirs
    assert sum(not trainable for trainable, _ in ours.values()) == min(freeze_at, 5)


def test_frozen_bn_keeps_statistics():
    reference = rd2.build_resnest_backbone(small_cfg("MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.RESNETS.NORM", "BN"),
                                           ShapeSpec(channels=3))
    randomize_norms(reference).eval()
    frozen = rd2.build_resnest_backbone(small_cfg("MODEL.BACKBONE.FREEZE_AT", "3", "MODEL.RESNETS.NORM", "BN"),
                                        ShapeSpec(channels=3))
    frozen.load_state_dict({k: v for k, v in reference.state_dict().items()
                            if k in frozen.state_dict()}, strict=True)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
        frozen.eval()
        assert all(torch.allclose(expected[k], v, atol=1e-5) for k, v in frozen(x).items())
        frozen.train()
        stem_stats = frozen.bn1.running_mean.clone()
        frozen(x)
        assert torch.equal(frozen.bn1.running_mean, stem_stats)
        assert not torch.equal(frozen.layer3[0].bn1.running_mean, reference.layer3[0].bn1.running_mean), \
            "res4 (not frozen at FREEZE_AT 3) must keep updating BN statistics in training"


# detectron2's names that the core's norm table has map onto it (one FrozenBatchNorm2d for FREEZE_AT and NORM);
# detectron2-only names (naiveSyncBN) build detectron2's own layer.
@pytest.mark.parametrize("norm,kind", [("BN", nn.BatchNorm2d), ("SyncBN", nn.SyncBatchNorm), ("GN", nn.GroupNorm),
                                       ("FrozenBN", FrozenBatchNorm2d), ("naiveSyncBN", NaiveSyncBatchNorm)])
def test_norm_follows_detectron2(norm, kind):
    backbone = rd2.build_resnest_backbone(small_cfg("MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.RESNETS.NORM", norm),
                                          ShapeSpec(channels=3))
    assert type(backbone.layer2[0].bn1) is kind and type(backbone.layer2[0].conv2.bn0) is kind


def _official_file(tmp_path, variant="resnest14", name="official.pth", seed=0):
    torch.manual_seed(seed)
    core = randomize_norms(create_model(variant), seed).eval()
    path = tmp_path / name
    torch.save(core.state_dict(), path)
    return core, path


def _backbone_features(model, x):
    with torch.no_grad():
        return model.backbone.bottom_up.eval()(x)


def test_batchnorm_weights_into_the_groupnorm_quick_start_name_the_norm_key(tmp_path):
    _, path = _official_file(tmp_path)
    model = build_model(small_cfg("MODEL.RESNETS.NORM", "GN"))
    with pytest.raises(CheckpointMismatchError) as raised:
        rd2.ResNeStCheckpointer(model).resume_or_load(str(path), resume=False)
    message = str(raised.value)
    assert "unexpected keys: conv1.1.running_mean" in message and "missing keys" not in message
    assert message.endswith("set MODEL.RESNETS.NORM to FrozenBN, BN or SyncBN to load it.")
    rd2.ResNeStCheckpointer(build_model(small_cfg("MODEL.RESNETS.NORM", "FrozenBN"))).resume_or_load(str(path),
                                                                                                    resume=False)


@pytest.mark.parametrize("layout", ["detectron2", "official", "timm"])
def test_weights_load_through_model_weights(tmp_path, layout):
    core, path = _official_file(tmp_path)
    if layout == "detectron2":  # what tools/convert_weights.py writes
        converted = tmp_path / "converted.pth"
        torch.save(from_official(core.state_dict(), "detectron2"), converted)
        path = converted
    elif layout == "timm":
        import timm  # a test dependency (tools/setup_env.sh)
        net = randomize_norms(timm.create_model("resnest14d"), 3).eval()
        torch.save(net.state_dict(), path)
        load_pretrained(core, net.state_dict())
    cfg = small_cfg("MODEL.WEIGHTS", str(path))
    model = build_model(cfg)
    rd2.ResNeStCheckpointer(model).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    loaded = model.state_dict()
    for key, value in core.state_dict().items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded["backbone.bottom_up." + key], value), key
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        expected = core.forward_features(x)
    for key, value in _backbone_features(model, x).items():
        assert torch.allclose(value, expected[key], atol=1e-5), key


def test_resnest_scheme_resolves_published_weights(tmp_path, hub_cache):
    """resnest://<variant> goes through the core registry and the torch hub cache (pre-filled: no network here)."""
    core, path = _official_file(tmp_path)
    from resnest_backbones.variants import VARIANTS
    cached = hub_cache / "checkpoints" / VARIANTS["resnest14"].checkpoint.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    # The content is not the published file's (its hash differs): the cache takes it only with a record of its URL.
    (cached.parent / (cached.name + ".source")).write_text(VARIANTS["resnest14"].checkpoint.url)
    assert PathManager.get_local_path("resnest://resnest14") == str(cached)
    cfg = small_cfg("MODEL.WEIGHTS", "resnest://resnest14")
    model = build_model(cfg)
    rd2.ResNeStCheckpointer(model).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    assert torch.equal(model.state_dict()["backbone.bottom_up.layer1.0.conv2.fc1.weight"],
                       core.state_dict()["layer1.0.conv2.fc1.weight"])
    with pytest.raises(KeyError, match="MODEL.WEIGHTS.*resnest50"):
        PathManager.get_local_path("resnest://resnest51")


def test_wrong_architecture_checkpoint_is_refused(tmp_path):
    _, path = _official_file(tmp_path, "resnest26")
    cfg = small_cfg("MODEL.WEIGHTS", str(path))
    with pytest.raises(CheckpointMismatchError, match="MODEL.RESNEST.VARIANT"):
        rd2.ResNeStCheckpointer(build_model(cfg)).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)


def test_detector_checkpoint_without_backbone_is_refused(tmp_path):
    path = tmp_path / "other_detector.pth"
    torch.save({"model": {"backbone.fpn_lateral2.weight": torch.zeros(1), "roi_heads.box_predictor.cls_score.weight":
                          torch.zeros(1)}}, path)
    cfg = small_cfg("MODEL.WEIGHTS", str(path))
    with pytest.raises(CheckpointMismatchError, match="no weight of the ResNeSt backbone"):
        rd2.ResNeStCheckpointer(build_model(cfg)).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)


def test_bad_config_values_name_the_key():
    with pytest.raises(KeyError, match=r"MODEL.RESNEST.VARIANT.*Did you mean 'resnest50'"):
        build_model(small_cfg("MODEL.RESNEST.VARIANT", "resnest5O"))
    with pytest.raises(KeyError, match=r"MODEL.RESNEST.RADX.*Did you mean MODEL.RESNEST.RADIX"):
        small_cfg("MODEL.RESNEST.RADX", "2")
    with pytest.raises(ValueError, match="MODEL.BACKBONE.FREEZE_AT"):
        build_model(small_cfg("MODEL.BACKBONE.FREEZE_AT", "7"))
    with pytest.raises(ValueError, match="MODEL.RESNETS.NORM"):
        build_model(small_cfg("MODEL.RESNETS.NORM", ""))
    with pytest.raises(ValueError, match="MODEL.RESNETS.RES5_DILATION"):
        build_model(small_cfg("MODEL.RESNETS.RES5_DILATION", "3"))


def test_typo_in_config_file(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text(f'_BASE_: "{CONFIG_DIR / "quickstart_mask_rcnn_s14_synthetic.yaml"}"\nMODEL:\n  RESNEST:\n'
                   '    STEM_WIDHT: 64\n')
    with pytest.raises(KeyError, match="MODEL.RESNEST.STEM_WIDTH"):
        load_training_config(str(bad))


def test_architecture_overrides_apply():
    backbone = rd2.build_resnest_backbone(small_cfg("MODEL.RESNEST.RADIX", "4", "MODEL.RESNEST.STEM_WIDTH", "16",
                                                    "MODEL.RESNEST.LAYERS", "[1, 2, 1, 1]"), ShapeSpec(channels=3))
    assert backbone.conv1[0].out_channels == 16 and len(backbone.layer2) == 2
    assert backbone.layer1[0].conv2.radix == 4


def test_clear_error_without_detectron2():
    code = ("import sys; sys.modules['detectron2'] = None\n"
            "try:\n    import resnest_backbones.detectron2\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT),
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "bash tools/setup_env.sh" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_fast_inference_copy_matches(norm):
    """fast_inference_copy fuses a copy: same detections, the original model untouched."""
    from resnest_backbones.apps.detectron2_train import fast_inference_copy
    cfg = small_cfg("MODEL.RESNETS.NORM", norm, "MODEL.BACKBONE.FREEZE_AT", "2", "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
                    "0.0")
    model = randomize_norms(build_model(cfg)).eval()
    fused = fast_inference_copy(model)
    assert fused is not model and any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.bottom_up.modules()) \
        == (norm == "BN")
    image = {"image": torch.rand(3, 96, 96) * 255}
    with torch.no_grad():
        expected, got = model([image])[0]["instances"], fused([image])[0]["instances"]
    assert len(expected) == len(got) > 0
    assert torch.allclose(expected.pred_boxes.tensor, got.pred_boxes.tensor, atol=1e-3)
    assert torch.allclose(expected.scores, got.scores, atol=1e-5)


def test_fast_inference_key_in_detectron2s_own_default_predictor(tmp_path):
    """MODEL.RESNEST.FAST_INFERENCE works under detectron2's plain DefaultPredictor (no project code around it)."""
    import numpy as np
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import DefaultPredictor

    from resnest_backbones.fast_inference import is_fast_inference
    plain_cfg = small_cfg("MODEL.RESNETS.NORM", "BN", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    model = randomize_norms(build_model(plain_cfg))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("weights")
    weights = ["MODEL.WEIGHTS", str(tmp_path / "weights.pth")]
    plain = DefaultPredictor(small_cfg("MODEL.RESNETS.NORM", "BN", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *weights))
    fast = DefaultPredictor(small_cfg("MODEL.RESNETS.NORM", "BN", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                                      "MODEL.RESNEST.FAST_INFERENCE", "True", *weights))
    image = (np.random.default_rng(0).random((120, 150, 3)) * 255).astype(np.uint8)
    expected, got = plain(image)["instances"], fast(image)["instances"]
    backbone = fast.model.backbone.bottom_up
    assert is_fast_inference(backbone._fused) and not is_fast_inference(backbone)  # the fused copy ran
    assert plain.model.backbone.bottom_up._fused is None  # off by default
    assert len(expected) == len(got) > 0
    assert torch.allclose(expected.pred_boxes.tensor, got.pred_boxes.tensor, atol=1e-3)
    assert torch.allclose(expected.scores, got.scores, atol=1e-5)
    # Checkpoints stay the plain model's: the copy is not a submodule.
    assert set(fast.model.state_dict()) == set(plain.model.state_dict())
    fast.model.train()
    assert backbone._fused is None