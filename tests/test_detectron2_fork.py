"""Models of the detectron2-ResNeSt fork on unpatched detectron2: its yaml keys are translated (each logged, the forced
flags explicit, what would differ refused), its checkpoints load through ResNeStCheckpointer and the converters, and
features and detections equal the fork's own model given the same weights.

Fixtures (tests/data/detectron2_fork/, see docs/detectron2.md): small fork-style yamls written for these tests; the
fork-layout checkpoints and reference outputs were made from them by the fork's own code (zhanghang1989/
detectron2-ResNeSt @ 54ec876, its build_resnet_backbone, with detectron2's heads); fork_backbone_keys.json lists the
keys and shapes of the fork's full-size backbones for its R50 / R101 / R50-DCN configs.
"""
import json
import logging
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from conftest import ROOT, rel_err

import resnest_backbones.detectron2  # noqa: F401  (fails the module if detectron2 is missing)
from detectron2.config import get_cfg
from detectron2.layers import ModulatedDeformConv
from detectron2.modeling import build_backbone, build_model
from resnest_backbones.detectron2 import ResNeStCheckpointer, load_config
from resnest_backbones.detectron2.deform import ModulatedDeformConvWithOffset
from resnest_backbones.keymaps import D2FORK, OPENMMLAB, detect_format, fork_to_official, official_to_fork, \
    official_to_openmmlab, to_official

DATA = ROOT / "tests" / "data" / "detectron2_fork"
MASK_YAML, DCN_YAML = str(DATA / "fork_tiny_mask_rcnn.yaml"), str(DATA / "fork_tiny_dcn.yaml")
MASK_PTH, DCN_PTH = str(DATA / "fork_tiny_mask_rcnn.pth"), str(DATA / "fork_tiny_dcn_imagenet.pth")
CPU = ["MODEL.DEVICE", "cpu"]


@pytest.fixture
def fork_log(caplog):
    """The plugin's log records (detectron2's setup_logger stops its logger from propagating to pytest's handler)."""
    logger = logging.getLogger("detectron2.resnest_backbones")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def _reference(name):
    return torch.load(DATA / name, map_location="cpu", weights_only=True)


# ----- configs
def test_stock_detectron2_cannot_read_a_fork_yaml():
    with pytest.raises(KeyError, match="MODEL.RESNETS.RADIX"):
        get_cfg().merge_from_file(MASK_YAML)


def test_fork_yaml_is_translated_and_every_translation_logged(fork_log):
    cfg = load_config(MASK_YAML)
    r = cfg.MODEL.RESNEST
    assert (r.VARIANT, r.RADIX, r.CARDINALITY, r.BASE_WIDTH, r.STEM_WIDTH, r.REDUCTION_FACTOR) == \
        ("resnest50", 2, 1, 4, 32, 4)
    assert (r.DEEP_STEM, r.AVD, r.AVG_DOWN, r.AVD_FIRST) == (True, True, True, False)
    assert cfg.MODEL.BACKBONE.NAME == "build_resnest_backbone"
    assert not {"RADIX", "DEEP_STEM", "AVD", "AVG_DOWN", "BOTTLENECK_WIDTH"} & set(cfg.MODEL.RESNETS)
    log = fork_log.text
    for line in ("MODEL.BACKBONE.NAME build_resnet_backbone -> build_resnest_backbone",
                 "MODEL.RESNEST.VARIANT = 'resnest50' (MODEL.RESNETS.DEPTH 50)",
                 "MODEL.RESNEST.DEEP_STEM = True (forced on by the fork because RADIX 2 > 1)",
                 "MODEL.RESNEST.AVD = True (forced on by the fork because RADIX 2 > 1)",
                 "MODEL.RESNEST.AVG_DOWN = True (forced on by the fork because RADIX 2 > 1)",
                 "MODEL.RESNEST.BASE_WIDTH = 4 (NUM_GROUPS 1 x WIDTH_PER_GROUP 4 x BOTTLENECK_WIDTH 64 / 64)",
                 "SyncBN kept"):
        assert line in log, line


def test_forced_flags_override_the_yaml_as_in_the_fork(fork_log):
    cfg = load_config(MASK_YAML, ["MODEL.RESNETS.AVD", "False", "MODEL.RESNETS.AVG_DOWN", "False"])
    assert cfg.MODEL.RESNEST.AVD and cfg.MODEL.RESNEST.AVG_DOWN
    assert "the yaml's AVD False is ignored, as the fork ignores it" in fork_log.text


def test_radix_1_is_a_plain_block_without_forced_flags():
    cfg = load_config(MASK_YAML, ["MODEL.RESNETS.RADIX", "1", "MODEL.RESNETS.NUM_GROUPS", "2",
                                  "MODEL.RESNETS.WIDTH_PER_GROUP", "32", "MODEL.RESNETS.BOTTLENECK_WIDTH", "8"])
    r = cfg.MODEL.RESNEST
    assert (r.RADIX, r.DEEP_STEM, r.AVD, r.AVG_DOWN, r.CARDINALITY, r.BASE_WIDTH) == (0, False, False, False, 2, 8)


def test_native_configs_are_not_translated(fork_log):
    cfg = load_config(str(ROOT / "configs/detectron2/mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml"))
    assert "fork" not in fork_log.text and "RADIX" not in cfg.MODEL.RESNETS and cfg.MODEL.RESNEST.RADIX is None


@pytest.mark.parametrize("opts,message", [
    (["MODEL.RESNETS.STRIDE_IN_1X1", "True"], "MODEL.RESNETS.STRIDE_IN_1X1 True is not supported"),
    (["MODEL.RESNETS.RES5_DILATION", "2"], "MODEL.RESNETS.RES5_DILATION 2 is not supported: the fork dilates"),
    (["MODEL.RESNETS.NORM", "GN"], "MODEL.RESNETS.NORM 'GN' is not supported"),
    (["MODEL.RESNETS.RES2_OUT_CHANNELS", "128"], "MODEL.RESNETS.RES2_OUT_CHANNELS 128 is not supported"),
    (["MODEL.RESNETS.DEPTH", "34"], r"MODEL.RESNETS.DEPTH 34 is not supported: .*\[50, 101, 152, 200, 269\]"),
    (["MODEL.RESNETS.BOTTLENECK_WIDTH", "40"], r"BOTTLENECK_WIDTH / 64 = 2.5 must be a positive integer"),
    (["MODEL.BACKBONE.NAME", "build_resnest_backbone"], "MODEL.BACKBONE.NAME 'build_resnest_backbone' is not"),
    (["MODEL.RESNEST.RADIX", "4"], "sets both the fork's MODEL.RESNETS.RADIX and this plugin's MODEL.RESNEST.RADIX"),
    (["MODEL.RESNETS.RADIX", "0"], "MODEL.RESNETS.RADIX 0 is not supported"),
])
def test_what_the_plugin_would_build_differently_is_refused(opts, message):
    with pytest.raises(ValueError, match=message):
        load_config(MASK_YAML, opts)


def test_deep_stem_width_follows_depth_and_ignores_stem_out_channels(fork_log):
    cfg = load_config(MASK_YAML, ["MODEL.RESNETS.DEPTH", "152", "MODEL.RESNETS.STEM_OUT_CHANNELS", "96"])
    r = cfg.MODEL.RESNEST
    assert (r.VARIANT, list(r.LAYERS), r.STEM_WIDTH) == ("resnest101", [3, 8, 36, 3], 64)
    assert "MODEL.RESNETS.STEM_OUT_CHANNELS 96 ignored, as the fork ignores it" in fork_log.text


FULL_SIZE = json.loads((DATA / "fork_backbone_keys.json").read_text())["models"]


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_backbones_have_the_fork_keys_and_shapes(name):
    # Structure at full size (R50, R101, R50-DCN, R50-DCN at radix 1): the backbone built from a fork config, in the
    # fork's names, has exactly the keys and shapes of the fork's own backbone (FREEZE_AT 2: FrozenBN stem and res2).
    expected = FULL_SIZE[name]
    cfg = load_config(MASK_YAML, CPU + ["MODEL.RESNETS.WIDTH_PER_GROUP", "64", "MODEL.RESNETS.OUT_FEATURES",
                                        "['res2', 'res3', 'res4', 'res5']"] + expected["opts"])
    with torch.device("meta"):
        backbone = build_backbone(cfg)
    ours = {k: list(v.shape) for k, v in official_to_fork(backbone.state_dict()).items()}
    assert ours == expected["keys"]


# ----- checkpoints
def test_fork_layouts_are_detected():
    detector = torch.load(MASK_PTH, map_location="cpu", weights_only=True)
    assert detect_format(detector["model"]) == (D2FORK, "backbone.")
    imagenet = torch.load(DCN_PTH, map_location="cpu", weights_only=True)
    assert detect_format(imagenet) == (D2FORK, "backbone.bottom_up.")
    bare = {k[len("backbone.bottom_up."):]: v for k, v in imagenet.items()}
    assert detect_format(bare) == (D2FORK, "")
    official = to_official(imagenet)[1]
    assert detect_format(official_to_openmmlab(official))[0] == OPENMMLAB  # OpenMMLab's stem.0 is not the fork's
    assert official_to_fork(official) == bare and fork_to_official(bare) == official


def _fork_detector():
    cfg = load_config(MASK_YAML, CPU)
    model = build_model(cfg).eval()
    ResNeStCheckpointer(model).load(MASK_PTH)
    return cfg, model


def test_fork_detector_checkpoint_reproduces_the_forks_features_and_detections():
    _, model = _fork_detector()
    reference = _reference("fork_tiny_mask_rcnn_reference.pt")
    with torch.no_grad():
        features = model.backbone(reference["input"])
        instances = model.inference([{"image": reference["image"]}], do_postprocess=False)[0]
    assert list(features) == list(reference["bottom_up"])
    for name, expected in reference["bottom_up"].items():
        assert rel_err(expected, features[name]) < 1e-5, name
    # The features agree to float rounding (FrozenBN computed another way); detections within 0.005 px on 80x64.
    expected = reference["instances"]
    assert len(instances) == len(expected["scores"]) > 0
    assert torch.equal(instances.pred_classes, expected["pred_classes"])
    assert torch.allclose(instances.pred_boxes.tensor, expected["pred_boxes"], atol=5e-3)
    assert torch.allclose(instances.scores, expected["scores"], atol=1e-4)
    assert torch.allclose(instances.pred_masks, expected["pred_masks"], atol=1e-3)


def test_fork_imagenet_file_loads_as_model_weights(tmp_path):
    # The fork's ImageNet files (resnest50_detectron-*.pth): a bare dict under backbone.bottom_up., no
    # num_batches_tracked, legacy serialization. Made here from the fork detector's backbone weights.
    detector = torch.load(MASK_PTH, map_location="cpu", weights_only=True)["model"]
    imagenet = OrderedDict(("backbone.bottom_up." + k[len("backbone."):], v) for k, v in detector.items()
                           if k.startswith("backbone.") and not k.endswith("num_batches_tracked"))
    path = tmp_path / "resnest50_detectron-tiny.pth"
    torch.save(imagenet, path, _use_new_zipfile_serialization=False)
    cfg = load_config(MASK_YAML, CPU + ["MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.RESNETS.NORM", "BN"])
    model = build_model(cfg).eval()
    ResNeStCheckpointer(model).load(str(path))
    reference = _reference("fork_tiny_mask_rcnn_reference.pt")
    with torch.no_grad():
        features = model.backbone(reference["input"])
    assert all(rel_err(v, features[k]) < 1e-5 for k, v in reference["bottom_up"].items())


def test_fork_checkpoint_of_another_architecture_is_refused():
    cfg = load_config(MASK_YAML, CPU + ["MODEL.RESNETS.WIDTH_PER_GROUP", "8"])
    with pytest.raises(Exception, match="wrong shape|does not fit"):
        ResNeStCheckpointer(build_model(cfg)).load(MASK_PTH)


def test_train_net_evaluates_a_fork_model_from_its_yaml_and_checkpoint(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/train_net.py"), "--config-file", MASK_YAML, "--eval-only",
         "MODEL.WEIGHTS", MASK_PTH, *CPU, "DATASETS.TEST", "('synthetic_shapes_val',)",
         "DATASETS.SYNTHETIC.ROOT", str(tmp_path / "data"), "DATASETS.SYNTHETIC.NUM_TRAIN", "2",
         "DATASETS.SYNTHETIC.NUM_VAL", "2", "DATASETS.SYNTHETIC.IMAGE_SIZE", "64", "TEST.VIS_IMAGES", "0",
         "OUTPUT_DIR", str(tmp_path / "out")], capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-5000:]
    assert "detectron2-ResNeSt fork config: MODEL.RESNEST.RADIX = 2" in result.stderr + result.stdout
    assert "a detectron2-ResNeSt fork detector checkpoint" in result.stderr + result.stdout
    assert {"bbox", "segm"} <= set(json.loads((tmp_path / "out" / "eval_results.json").read_text()))


def test_converters_write_native_config_and_weights(tmp_path):
    native_yaml, native_pth = tmp_path / "native.yaml", tmp_path / "native.pth"
    result = subprocess.run([sys.executable, str(ROOT / "tools/convert_fork_config.py"), MASK_YAML, str(native_yaml),
                             "--weights", MASK_PTH, str(native_pth)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    cfg = get_cfg()  # the native config reads without any fork key
    resnest_backbones.detectron2.add_resnest_config(cfg)
    cfg.merge_from_file(str(native_yaml))
    assert cfg.MODEL.RESNEST.RADIX == 2 and cfg.MODEL.WEIGHTS == str(native_pth)
    _, fork_model = _fork_detector()
    native = torch.load(native_pth, map_location="cpu", weights_only=True)["model"]
    expected = fork_model.state_dict()  # the fork detector as loaded through the checkpointer
    assert set(native) == set(expected)
    assert all(torch.equal(native[k].to(v.dtype), v) for k, v in expected.items())
    # tools/convert_weights.py: the fork layout is detected, and converts both ways
    out = tmp_path / "official.pth"
    convert = subprocess.run([sys.executable, str(ROOT / "tools/convert_weights.py"), DCN_PTH, str(out), "--to",
                              "official"], capture_output=True, text=True, timeout=600)
    assert convert.returncode == 0 and "detectron2-fork -> official" in convert.stdout, convert.stderr
    back = tmp_path / "fork.pth"
    subprocess.run([sys.executable, str(ROOT / "tools/convert_weights.py"), str(out), str(back), "--to",
                    "detectron2-fork"], check=True, capture_output=True, timeout=600)
    original = torch.load(DCN_PTH, weights_only=True)
    again = torch.load(back, weights_only=True)
    assert again.keys() == original.keys() and all(torch.equal(again[k], original[k]) for k in original)


# ----- DCN
def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value) if isinstance(value, int) and \
        not isinstance(value, bool) else value


def _dcn_backbone():
    backbone = build_backbone(load_config(DCN_YAML, CPU)).eval()
    ResNeStCheckpointer(backbone).load(DCN_PTH)  # a backbone-only file: loaded strictly
    return backbone


def test_dcn_structure_and_weights_equal_the_forks():
    backbone = _dcn_backbone()
    reference = _reference("fork_tiny_dcn_reference.pt")
    modules = dict(backbone.named_modules())
    for fork_name, expected in reference["structure"].items():
        stage, index, _ = fork_name.split(".", 2)
        block = modules[f"layer{int(stage[3:]) - 1}.{index}"]
        module = block.conv2.conv.offset if fork_name.endswith("conv2_offset") else block.conv2.conv
        for attribute, value in expected.items():
            assert _pair(getattr(module, attribute)) == _pair(value), (fork_name, attribute)
        if "conv2_offset" in fork_name:
            assert isinstance(block.conv2.conv, ModulatedDeformConvWithOffset)
    weights = official_to_fork(backbone.state_dict())
    original = torch.load(DCN_PTH, weights_only=True)
    for key, value in original.items():
        assert torch.equal(weights[key[len("backbone.bottom_up."):]], value.float()), key


def test_dcn_says_it_needs_a_gpu_on_cpu():
    backbone = _dcn_backbone()
    with pytest.raises(NotImplementedError, match="DEFORM_ON_PER_STAGE: deformable convolution runs only with "
                                                  "detectron2's compiled ops on a CUDA device"):
        backbone(torch.rand(1, 3, 32, 32))


def test_dcn_wiring_matches_the_fork_with_a_cpu_kernel(monkeypatch):
    # Only the deformable kernel is swapped, in both models alike (the fork's reference was computed with the same
    # swap): torchvision's deform_conv2d, which takes detectron2's offset and mask layout. Everything around the
    # kernel (offset convolution, offset/mask split, sigmoid, split attention, avd) is compared with the fork's.
    import torchvision

    def kernel(self, x, offset, mask):
        return torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride,
                                             padding=self.padding, dilation=self.dilation, mask=mask)
    monkeypatch.setattr(ModulatedDeformConv, "forward", kernel)
    backbone = _dcn_backbone()
    reference = _reference("fork_tiny_dcn_reference.pt")
    with torch.no_grad():
        features = backbone(reference["input"])
    for name, expected in reference["bottom_up"].items():
        assert rel_err(expected, features[name]) < 1e-5, name
