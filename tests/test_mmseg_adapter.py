"""The registered OpenMMLab backbone in mmseg: mmseg's defaults, exact against mmseg's own ResNeSt in the -d8 layout
(a backbone dict with mmseg's strides/dilations and no dilated_layout builds mmseg's network), the official layout
on request, and the synthetic ADE20K / Cityscapes layouts read by mmseg's own dataset classes. Real mmseg, CPU."""
import numpy as np
import pytest
import torch
from PIL import Image
from mmseg.datasets import ADE20KDataset, CityscapesDataset  # required, never skipped
from mmseg.models.backbones import ResNeSt as MMSegResNeSt
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

from conftest import randomize_norms, rel_err
from resnest_backbones.datasets.synthetic_semantic import make_ade20k_layout, make_cityscapes_layout
from resnest_backbones.mmseg import MMSegResNeStBackbone as ResNeStBackbone  # importing registers it

D8 = dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))


@pytest.fixture(autouse=True)
def mmseg_scope():
    """mmengine builds from the registry of the current default scope; another test may have left mmdet's."""
    with DefaultScope.overwrite_default_scope("mmseg"):
        yield


def test_registered_in_mmseg_under_its_own_name_with_mmseg_defaults():
    assert MODELS.get("ResNeStBackbone") is ResNeStBackbone
    assert MODELS.get("ResNeSt") is MMSegResNeSt
    model = MODELS.build(dict(type="ResNeStBackbone", depth=50, base_channels=32))
    assert model.norm_eval is False and model.conv1[6].out_channels == 64  # mmseg: stem_channels=64 fixed


@pytest.mark.parametrize("depth,stem_channels", [(50, 64), (101, 128)])
def test_equals_mmseg_resnest_d8(depth, stem_channels, tmp_path):
    torch.manual_seed(depth)
    reference = randomize_norms(MMSegResNeSt(depth=depth, stem_channels=stem_channels, contract_dilation=True,
                                             **D8), seed=depth)
    reference.eval()
    torch.save({"state_dict": {"backbone." + k: v for k, v in reference.state_dict().items()}},
               tmp_path / "segmentor.pth")
    # mmseg's own dict with only type changed: no dilated_layout needed.
    ours = MODELS.build(dict(type="ResNeStBackbone", depth=depth, stem_channels=stem_channels, contract_dilation=True,
                             init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "segmentor.pth"),
                                           prefix="backbone."), **D8))
    ours.init_weights()
    ours.eval()
    x = torch.randn(1, 3, 72, 88)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert [t.shape[-1] for t in got] == [22, 11, 11, 11]  # output stride 8
    for a, b in zip(expected, got):
        assert rel_err(a, b) <= 1e-5
    # The official layout (the paper's models) is a different function in the dilated stages' first blocks.
    official = MODELS.build(dict(type="ResNeStBackbone", depth=depth, stem_channels=stem_channels,
                                 dilated_layout="official", **D8))
    assert official.layer3[0].conv2.conv.dilation == (1, 1) and official.layer3[0].avd_layer is not None
    official.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert rel_err(expected[3], official.eval()(x)[3]) > 1e-3


def test_output_stride_is_the_official_layout():
    with pytest.raises(ValueError, match="not both"):
        MODELS.build(dict(type="ResNeStBackbone", depth=50, output_stride=16, **D8))
    model = MODELS.build(dict(type="ResNeStBackbone", variant="resnest14", output_stride=16)).eval()
    assert [f["stride"] for f in model.feature_info] == [4, 8, 16, 16]
    # output_stride= means the official layout: contracted first dilation and the stride-1 avd pool there.
    assert model.layer4[0].conv2.conv.dilation == (1, 1) and model.layer4[0].avd_layer is not None
    # mmseg's default contract_dilation=False: every block of a dilated stage uses the stage's dilation.
    plain = MODELS.build(dict(type="ResNeStBackbone", variant="resnest14", strides=(1, 2, 2, 1),
                              dilations=(1, 1, 1, 2)))
    assert plain.layer4[0].conv2.conv.dilation == (2, 2) and plain.layer4[0].avd_layer is None


def _read(dataset):
    """Label values on disk of every sample the dataset lists."""
    paths = [dataset.get_data_info(i)["seg_map_path"] for i in range(len(dataset))]
    return set(np.unique(np.concatenate([np.asarray(Image.open(path)).ravel() for path in paths])).tolist())


def test_synthetic_layouts_read_by_mmseg_datasets(tmp_path):
    ade = make_ade20k_layout(tmp_path / "ade", num_train=6, num_val=3, image_size=(64, 64), num_classes=4)
    dataset = ADE20KDataset(data_root=ade["root"], metainfo=dict(classes=ade["classes"]), lazy_init=False,
                            data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"))
    assert len(dataset) == 3 and dataset.metainfo["classes"] == ade["classes"]
    # ADE convention on disk: 0 = other, classes 1..N; mmseg's label map keeps the N classes in order.
    assert _read(dataset) <= {0, 1, 2, 3, 4} and len(_read(dataset) - {0}) >= 2
    label_map = dataset.metainfo["label_map"]  # mmseg maps a class subset by name; ours are ADE's first classes
    assert label_map is None or all(label_map[i] == i for i in range(4))
    city = make_cityscapes_layout(tmp_path / "city", num_train=6, num_val=3, image_size=(64, 128), num_classes=4)
    dataset = CityscapesDataset(data_root=city["root"], metainfo=dict(classes=city["classes"]),
                                data_prefix=dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"))
    assert len(dataset) == 6
    assert _read(dataset) <= {0, 1, 2, 3, 255} and len(_read(dataset) - {255}) >= 2
    # Same arguments: reused, not rewritten; the val split is independent of the train size.
    before = (tmp_path / "city" / "synthetic_meta.json").stat().st_mtime_ns
    make_cityscapes_layout(tmp_path / "city", num_train=6, num_val=3, image_size=(64, 128), num_classes=4)
    assert (tmp_path / "city" / "synthetic_meta.json").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="num_classes"):
        make_ade20k_layout(tmp_path / "bad", num_classes=40)
