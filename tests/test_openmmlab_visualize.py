"""The OpenMMLab quick starts' drawings: mmdet's / mmseg's own visualizer draws ground truth beside the predictions,
ours enlarges a small input (nearest neighbour, a whole factor, panels at least 512 px wide) and adds a legend above
(the two sides, the score threshold, the class colours), and changes nothing else. Real mmdet / mmseg visualizers
built from their registries, as the quick-start configs build them."""
import math
import pathlib

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData, PixelData

import resnest_backbones
from resnest_backbones.apps.legend import legend_strip

CLASSES = ("circle", "square", "triangle")
PALETTE = [(0, 114, 189), (217, 83, 25), (237, 177, 32)]
H, W = 64, 80


def _image(scale=1):
    """The test image; ``scale`` > 1: enlarged by OpenCV's nearest-neighbour resize (not the code under test)."""
    image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    return cv2.resize(image, (W * scale, H * scale), interpolation=cv2.INTER_NEAREST) if scale > 1 else image


def _detection_sample(scale=1):
    """Boxes, a ground-truth mask (mmdet's BitmapMasks) and a predicted one (a tensor), drawn ``scale`` times
    larger when ``scale`` > 1 (built at that size here, independently of the code under test)."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    mask = np.zeros((1, H * scale, W * scale), np.uint8)
    mask[0, 8 * scale:25 * scale, 10 * scale:30 * scale] = 1
    sample = DetDataSample()
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[5.0, 5.0, 40.0, 30.0]]) * scale,
                                       labels=torch.tensor([1]), masks=BitmapMasks(mask, H * scale, W * scale))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[6.0, 5.0, 40.0, 31.0], [50.0, 40.0, 70.0, 60.0]]) * scale,
        labels=torch.tensor([1, 2]), scores=torch.tensor([0.9, 0.3]),
        masks=torch.from_numpy(np.concatenate([mask, np.roll(mask, 2 * scale, axis=2)]).astype(bool)))
    return sample


def _segmentation_sample(scale=1):
    from mmseg.structures import SegDataSample
    sample = SegDataSample()
    labels = torch.zeros((1, H * scale, W * scale), dtype=torch.long)
    labels[:, 10 * scale:40 * scale, 20 * scale:60 * scale] = 1
    sample.gt_sem_seg = PixelData(data=labels)
    sample.pred_sem_seg = PixelData(data=torch.roll(labels, 3 * scale, dims=2))
    return sample


FRAMEWORKS = {
    # framework: (module registering ours, their class, our type, data sample, add_datasample extras)
    "mmdet": ("resnest_backbones.apps.mmdet_visualize", "DetLocalVisualizer", "LegendDetLocalVisualizer",
              _detection_sample, dict(pred_score_thr=0.5)),
    "mmseg": ("resnest_backbones.apps.mmseg_visualize", "SegLocalVisualizer", "LegendSegLocalVisualizer",
              _segmentation_sample, {}),
}


def _build(framework, type_name, name, **kwargs):
    import importlib
    module, *_ = FRAMEWORKS[framework]
    importlib.import_module(module)
    registry = importlib.import_module(f"{framework}.registry").VISUALIZERS
    importlib.import_module(f"{framework}.visualization")  # registers their visualizers
    with DefaultScope.overwrite_default_scope(framework):
        visualizer = registry.build(dict(type=type_name, name=name, **kwargs))
    visualizer.dataset_meta = dict(classes=CLASSES, palette=PALETTE)
    return visualizer


def _has_colour(strip, colour):
    return bool(np.all(strip == np.array(colour, dtype=np.uint8), axis=-1).any())


def _draw_both(framework, tmp_path, scale, **ours_args):
    """(their drawing of the input enlarged ``scale`` times by the test, our drawing of the input) as read back."""
    _, theirs_type, ours_type, make_sample, extras = FRAMEWORKS[framework]
    theirs_file, ours_file = tmp_path / "theirs.png", tmp_path / "ours.png"
    np.random.seed(0)  # mmdet jitters each mask's colour with numpy's global RNG
    _build(framework, theirs_type, f"theirs-{framework}").add_datasample(
        "x", _image(scale), make_sample(scale), out_file=str(theirs_file), **extras)
    # A new name per setting: mmengine hands back the existing visualizer of a name, whatever the arguments.
    ours = _build(framework, ours_type, f"ours-{framework}-{scale}-{ours_args}", **ours_args)
    np.random.seed(0)
    ours.add_datasample("x", _image(), make_sample(), out_file=str(ours_file), **extras)
    return mmcv.imread(str(theirs_file)), mmcv.imread(str(ours_file)), ours


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_legend_above_their_drawing_of_the_enlarged_input(framework, tmp_path):
    scale = math.ceil(512 / W)  # the smallest whole factor that makes an 80-pixel panel at least 512 wide
    theirs_drawing, ours_drawing, ours = _draw_both(framework, tmp_path, scale)
    assert theirs_drawing.shape == (H * scale, 2 * W * scale, 3)  # ground truth | predictions
    legend_height = ours_drawing.shape[0] - H * scale
    assert ours_drawing.shape[1] == 2 * W * scale >= 2 * 512 and legend_height > 0
    # Their panels, drawn on the nearest-neighbour enlargement of the input (image, boxes, masks, label maps):
    # their labels and lines keep their pixel sizes, so they cover 1/scale^2 of the area they covered before.
    np.testing.assert_array_equal(ours_drawing[legend_height:], theirs_drawing)
    legend = ours_drawing[:legend_height, :, ::-1]  # BGR file -> RGB
    assert all(_has_colour(legend, colour) for colour in PALETTE)  # one swatch per class
    assert ours.get_image().shape == (legend_height + H * scale, 2 * W * scale, 3)  # what the caller can read back


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_min_panel_width(framework, tmp_path):
    """``min_panel_width=0`` draws at the input's size; an input as wide as the minimum is not enlarged."""
    theirs_drawing, ours_drawing, _ = _draw_both(framework, tmp_path, 1, min_panel_width=0)
    np.testing.assert_array_equal(ours_drawing[ours_drawing.shape[0] - H:], theirs_drawing)
    _, ours_drawing, _ = _draw_both(framework, tmp_path, 1, min_panel_width=W)
    assert ours_drawing.shape[1] == 2 * W
    _, ours_drawing, _ = _draw_both(framework, tmp_path, 1, min_panel_width=W + 1)
    assert ours_drawing.shape[1] == 2 * 2 * W
    with pytest.raises(ValueError, match="min_panel_width must be >= 0"):
        _build(framework, FRAMEWORKS[framework][2], f"bad-{framework}", min_panel_width=-1)


def test_legend_names_the_sides_and_the_threshold():
    """The strip is the legend of the panels actually drawn, with the threshold the hook passed."""
    visualizer = _build("mmdet", "LegendDetLocalVisualizer", "titles")
    sample = _detection_sample()
    visualizer.add_datasample("x", _image(), sample, pred_score_thr=0.5)
    size = math.ceil(512 / W) * W  # each panel, enlarged
    legend = visualizer.get_image()[:-size * H // W]
    np.testing.assert_array_equal(legend, legend_strip(2 * size, ["ground truth", "predictions >= 0.50"], CLASSES,
                                                       PALETTE))
    assert not np.array_equal(legend, legend_strip(2 * size, ["ground truth", "predictions >= 0.30"], CLASSES,
                                                       PALETTE))
    visualizer.add_datasample("x", _image(), sample, draw_gt=False, pred_score_thr=0.3)  # one panel only
    np.testing.assert_array_equal(visualizer.get_image()[:-size * H // W],
                                  legend_strip(size, ["predictions >= 0.30"], CLASSES, PALETTE))


def test_saved_through_the_vis_backend(tmp_path):
    """The quick starts' path: the validation hook's drawing goes to the LocalVisBackend with the legend on it."""
    visualizer = _build("mmseg", "LegendSegLocalVisualizer", "backend", vis_backends=[dict(type="LocalVisBackend")],
                        save_dir=str(tmp_path))
    visualizer.add_datasample("val_img", _image(), _segmentation_sample(), step=3)
    saved = list(tmp_path.rglob("*.png"))
    assert len(saved) == 1
    drawing = mmcv.imread(str(saved[0]))
    scale = math.ceil(512 / W)
    assert drawing.shape[0] > H * scale and drawing.shape[1] == 2 * W * scale
    assert all(_has_colour(drawing[:drawing.shape[0] - H * scale, :, ::-1], colour) for colour in PALETTE)
    visualizer.add_image("direct", _image(), step=4)  # not from add_datasample: saved as given
    direct = [path for path in tmp_path.rglob("*.png") if "direct" in path.name]
    assert len(direct) == 1 and mmcv.imread(str(direct[0]))[..., ::-1].tolist() == _image().tolist()


def test_legend_wraps_and_checks_the_palette():
    many = [f"class{i}" for i in range(12)]
    one_line = legend_strip(400, ["a", "b"], many[:1], PALETTE[:1])
    wrapped = legend_strip(400, ["a", "b"], many, [PALETTE[i % 3] for i in range(12)])
    assert wrapped.shape[1] == one_line.shape[1] == 400 and wrapped.shape[0] > one_line.shape[0]
    titles = ["ground truth", "predictions >= 0.50"]
    narrow, wide = legend_strip(160, titles, CLASSES, PALETTE), legend_strip(400, titles, CLASSES, PALETTE)
    assert narrow.shape[0] > wide.shape[0]  # titles wider than their 80-pixel panels: one line each, not clipped
    assert not np.array_equal(legend_strip(160, ["ground truth", "predictions >= 0.30"], CLASSES, PALETTE), narrow)
    with pytest.raises(ValueError, match="palette has 1 colours for 3 classes"):
        legend_strip(100, ["a"], CLASSES, PALETTE[:1])


@pytest.mark.parametrize("config", ["mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py",
                                    "mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py",
                                    "mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py"])
def test_quick_starts_select_the_legend_visualizer(config):
    cfg = Config.fromfile(resnest_backbones.config_path(config))
    framework = config.split("/")[0]
    module, _, ours_type, *_ = FRAMEWORKS[framework]
    assert cfg.visualizer.type == ours_type and module in cfg.custom_imports.imports


def _configs():
    root = pathlib.Path(__file__).resolve().parents[1]
    return sorted([*root.glob("configs/mmdet/*.py"), *root.glob("configs/mmseg/*.py"), *root.glob("tests/configs/*.py")])


@pytest.mark.parametrize("path", _configs(), ids=lambda path: path.name)
def test_every_config_using_a_legend_visualizer_imports_it(path):
    """A child config that replaces custom_imports must still import the module registering the visualizer its
    base selects (mmengine builds the visualizer even without validation)."""
    cfg = Config.fromfile(str(path))
    chosen = cfg.get("visualizer", {}).get("type")
    modules = {ours_type: module for module, _, ours_type, *_ in FRAMEWORKS.values()}
    if chosen in modules:
        assert modules[chosen] in cfg.custom_imports.imports
