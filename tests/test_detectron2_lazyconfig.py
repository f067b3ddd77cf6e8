"""detectron2 LazyConfig: the shipped Python configs build what their names say (new_baselines recipe), also from an
installed wheel; the LazyConfig quick start is the yacs quick start (same detector, same detections for the same
weights); tools/lazyconfig_train_net.py trains, resumes and evaluates end to end on CPU (tiny), also with 2
processes, and refuses SyncBN on CPU processes and one image per process with BN."""
import json
import subprocess
import sys
import zipfile

import pytest
import torch
from torch import nn

from conftest import ROOT, randomize_norms

import resnest_backbones.detectron2  # noqa: F401  (fails the module if detectron2 is missing)
from detectron2.config import LazyConfig, instantiate
from detectron2.data import transforms as T
from detectron2.layers import NaiveSyncBatchNorm
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import CascadeROIHeads, StandardROIHeads
from detectron2.utils.testing import assert_instances_allclose
from resnest_backbones.apps.detectron2_lazy_train import check_lazy_config, load_lazy_config
from resnest_backbones.apps.detectron2_train import load_training_config

LAZY = ROOT / "configs" / "detectron2" / "lazy"
TOOL = ROOT / "tools" / "lazyconfig_train_net.py"
QUICKSTART = "configs/detectron2/lazy/quickstart_mask_rcnn_s14_synthetic.py"
BASELINES = {"mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco.py": ("resnest50", StandardROIHeads),
             "mask_rcnn_s101_fpn_syncbn_lsj_100ep_coco.py": ("resnest101", StandardROIHeads),
             "cascade_mask_rcnn_s50_fpn_syncbn_lsj_100ep_coco.py": ("resnest50", CascadeROIHeads),
             "cascade_mask_rcnn_s101_fpn_syncbn_lsj_100ep_coco.py": ("resnest101", CascadeROIHeads)}


def test_every_shipped_lazy_config_is_tested():
    shipped = {p.name for p in LAZY.glob("*.py")}
    assert shipped == set(BASELINES) | {"quickstart_mask_rcnn_s14_synthetic.py"}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_new_baseline_configs_build_the_recipe(name):
    variant, heads = BASELINES[name]
    cfg = LazyConfig.load(str(LAZY / name))
    model = instantiate(cfg.model).eval()
    backbone = model.backbone.bottom_up
    assert backbone.variant == variant and isinstance(model.roi_heads, heads)
    # SyncBN in backbone and FPN, trained from scratch (nothing frozen), NaiveSyncBN(stats_mode N) in the heads.
    assert isinstance(backbone.bn1, nn.SyncBatchNorm) and isinstance(backbone.layer1[0].conv2.bn0, nn.SyncBatchNorm)
    assert backbone.frozen_stages == -1 and all(p.requires_grad for p in backbone.parameters())
    assert isinstance(model.backbone.fpn_lateral2.norm, nn.SyncBatchNorm)
    box_heads = model.roi_heads.box_head if heads is CascadeROIHeads else [model.roi_heads.box_head]
    assert len(box_heads) == (3 if heads is CascadeROIHeads else 1)
    for head in box_heads:
        convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
        fcs = [m for m in head.modules() if isinstance(m, nn.Linear)]
        assert len(convs) == 4 and len(fcs) == 1  # 4conv1fc
        assert all(isinstance(c.norm, NaiveSyncBatchNorm) and c.norm._stats_mode == "N" for c in convs)
    assert isinstance(model.roi_heads.mask_head.mask_fcn1.norm, NaiveSyncBatchNorm)
    assert len(model.proposal_generator.rpn_head.conv) == 2  # 2-conv RPN head
    assert model.input_format == "RGB"
    # Large-scale jitter at 1024, batch 64, 100 epochs with the step schedule, AMP, from scratch.
    augmentations = instantiate(cfg.dataloader.train.mapper.augmentations)
    assert [type(a) for a in augmentations] == [T.ResizeScale, T.FixedSizeCrop, T.RandomFlip]
    assert (augmentations[0].min_scale, augmentations[0].max_scale, augmentations[1].crop_size) == (0.1, 2.0,
                                                                                                   (1024, 1024))
    assert cfg.dataloader.train.total_batch_size == 64 and cfg.train.max_iter == 184375
    assert cfg.train.amp.enabled and cfg.train.init_checkpoint == "" and cfg.train.device == "cuda"
    schedule = instantiate(cfg.lr_multiplier)
    assert schedule(0.5) == pytest.approx(1.0) and schedule(0.95) == pytest.approx(0.1) and schedule(0.99) == \
        pytest.approx(0.01)
    with torch.no_grad():  # one process: SyncBN normalises like BN
        outputs = model([{"image": torch.rand(3, 64, 96) * 255}])
    assert "instances" in outputs[0]


def test_lazy_quick_start_is_the_yaml_quick_start():
    lazy = instantiate(load_lazy_config(QUICKSTART).model)
    yacs = build_model(load_training_config(str(ROOT / "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml")))
    torch.manual_seed(0)
    randomize_norms(yacs)
    lazy.load_state_dict(yacs.state_dict())  # strict: same modules, same shapes
    lazy.eval(), yacs.eval()
    image = torch.rand(3, 96, 128) * 255
    with torch.no_grad():
        expected = yacs.inference([{"image": image}], do_postprocess=False)[0]
        actual = lazy.inference([{"image": image}], do_postprocess=False)[0]
    assert len(expected) > 0
    assert_instances_allclose(expected, actual)


def test_lazy_configs_load_from_an_installed_wheel(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, cwd=tmp_path, capture_output=True)
    wheel = next(tmp_path.glob("resnest_backbones-*.whl"))
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    installed = tmp_path / "site" / "resnest_backbones" / "configs" / "detectron2" / "lazy"
    for name in sorted(BASELINES) + ["quickstart_mask_rcnn_s14_synthetic.py"]:
        cfg = LazyConfig.load(str(installed / name))  # relative imports of common/ resolve in the installed copy
        assert {"model", "dataloader", "optimizer", "lr_multiplier", "train"} <= set(cfg)


def _opts(tmp, output, max_iter, *extra):
    return [f"synthetic.root={tmp / 'data'}", "synthetic.num_train=8", "synthetic.num_val=4",
            "synthetic.image_size=64", f"train.max_iter={max_iter}", "train.checkpointer.period=2",
            f"train.output_dir={output}", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
            "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
            "dataloader.train.mapper.augmentations.0.max_size=64",
            "dataloader.test.mapper.augmentations.0.short_edge_length=64",
            "dataloader.test.mapper.augmentations.0.max_size=64", "model.roi_heads.box_predictor.test_score_thresh=0.0",
            *extra]


def _run(tmp, *args, check=True):
    cwd = tmp / "elsewhere"  # from an unrelated directory, the config given by its shipped name
    cwd.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, str(TOOL), "--config-file", QUICKSTART, "--dist-url", "auto", *args],
                            cwd=str(cwd), capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def _predictions(output):
    with open(output / "inference" / "coco_instances_results.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lazy")
    output = tmp / "out"
    result = _run(tmp, *_opts(tmp, output, 4))
    return tmp, output, result.stdout + result.stderr


def test_lazy_tool_trains_and_evaluates(trained):
    _, output, log = trained
    assert (output / "model_final.pth").exists() and (output / "model_0000001.pth").exists()
    assert (output / "config.yaml").exists()  # detectron2's default_setup saved the LazyConfig
    assert "Starting training from iteration 0" in log and "copypaste" in log
    results = json.load(open(output / "eval_results.json"))
    assert {"bbox", "segm"} <= set(results) and len(_predictions(output)) > 0


def test_lazy_tool_resumes(trained):
    tmp, output, _ = trained
    saved = torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)
    assert saved["iteration"] == 3 and saved["trainer"]["optimizer"]["state"]  # AdamW moments resume too
    log = _run(tmp, "--resume", *_opts(tmp, output, 6))
    assert "Starting training from iteration 4" in log.stdout + log.stderr
    assert torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 5


def test_lazy_tool_eval_only_reproduces_predictions(trained):
    tmp, output, _ = trained
    first = tmp / "first"
    _run(tmp, *_opts(tmp, first, 2))
    again = tmp / "again"
    _run(tmp, "--eval-only", *_opts(tmp, again, 2, f"train.init_checkpoint={first / 'model_final.pth'}"))
    assert json.load(open(again / "eval_results.json")) == json.load(open(first / "eval_results.json"))
    ours, theirs = _predictions(again), _predictions(first)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert a["category_id"] == b["category_id"] and a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)


def test_lazy_tool_trains_with_two_cpu_processes(trained):
    tmp, _, _ = trained
    output = tmp / "ddp"
    log = _run(tmp, "--num-gpus", "2", *_opts(tmp, output, 3, "dataloader.train.total_batch_size=4"))
    assert "World size: 2" in log.stdout + log.stderr
    assert torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 2


def test_lazy_tool_refuses_sync_bn_on_cpu_processes(tmp_path):
    result = _run(tmp_path, "--num-gpus", "2", *_opts(tmp_path, tmp_path / "out", 2,
                                                       "dataloader.train.total_batch_size=4",
                                                       "model.backbone.norm=SyncBN",
                                                       "model.roi_heads.mask_head.conv_norm=SyncBN"), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]  # one message
    assert ("lazyconfig_train_net.py: error: model.backbone.norm, model.roi_heads.mask_head.conv_norm are SyncBN"
            in result.stderr)
    assert "`model.backbone.norm=naiveSyncBN model.roi_heads.mask_head.conv_norm=naiveSyncBN`" in result.stderr


def test_one_image_per_process_with_bn_is_refused():
    one = ["dataloader.train.total_batch_size=1"]
    cfg = load_lazy_config(QUICKSTART, one + ["model.backbone.bottom_up.norm=BN"])
    with pytest.raises(ValueError, match=r"dataloader.train.total_batch_size 1 over 1 process.*"
                                         r"model.backbone.bottom_up.norm 'BN'"):
        check_lazy_config(cfg, training=True)
    check_lazy_config(cfg, training=False)  # evaluation does not normalise with batch statistics
    check_lazy_config(load_lazy_config(QUICKSTART, one + ["model.backbone.bottom_up.norm=FrozenBN"]), training=True)
    quickstart = load_lazy_config(QUICKSTART, one)  # GroupNorm: no batch statistics, one image is fine
    assert quickstart.model.backbone.bottom_up.norm == "GN"
    check_lazy_config(quickstart, training=True)
