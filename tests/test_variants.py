"""Every published variant builds with its published hyper-parameters; the registry is complete and consistent."""
import re

import pytest
import timm
import torch

import resnest_backbones as rb
from resnest_backbones.variants import VARIANTS

# timm's names for the variants it also publishes (architectures built independently by timm).
TIMM_NAMES = {"resnest14": "resnest14d", "resnest26": "resnest26d", "resnest50": "resnest50d",
              "resnest101": "resnest101e", "resnest200": "resnest200e", "resnest269": "resnest269e",
              "resnest50_fast_4s2x40d": "resnest50d_4s2x40d", "resnest50_fast_1s4x24d": "resnest50d_1s4x24d"}


def test_every_published_variant_is_listed():
    expected = {"resnest14", "resnest26", "resnest50", "resnest101", "resnest200", "resnest269"} | {
        f"resnest50_fast_{s}" for s in ("1s1x64d", "2s1x64d", "4s1x64d", "1s2x40d", "2s2x40d", "4s2x40d", "1s4x24d")}
    assert set(rb.list_models()) == expected


@pytest.mark.parametrize("name", [n for n in VARIANTS if n.startswith("resnest50_fast")])
def test_fast_variant_names_encode_their_hyper_parameters(name):
    radix, cardinality, width = map(int, re.fullmatch(r"resnest50_fast_(\d)s(\d)x(\d+)d", name).groups())
    model = rb.create_model(name)
    block = model.layer1[0]
    assert block.avd_first and model.layer2[0].avd_layer is not None
    assert block.conv2.radix == radix and block.conv2.conv.groups == radix * cardinality
    assert block.conv1.out_channels == width * cardinality


@pytest.mark.parametrize("name", list(TIMM_NAMES))
def test_parameter_count_and_shapes_equal_timms(name):
    ours = rb.create_model(name, num_classes=1000)
    theirs = timm.create_model(TIMM_NAMES[name], pretrained=False)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}


def test_registry_entries_are_well_formed():
    for name, variant in VARIANTS.items():
        checkpoint = variant.checkpoint
        assert checkpoint.url.endswith("/" + checkpoint.file_name), name
        assert re.fullmatch(r"[0-9a-f]{8}", checkpoint.hash_prefix), name
        assert checkpoint.input_size in (224, 256, 320, 416) and checkpoint.num_classes == 1000


def test_deep_stem_width_by_depth():
    assert rb.create_model("resnest50").conv1[0].out_channels == 32
    assert rb.create_model("resnest101").conv1[0].out_channels == 64


def test_overrides_reach_the_network():
    model = rb.create_model("resnest50", radix=4, cardinality=2, base_width=40, out_features=["res2"])
    assert model.layer1[0].conv2.conv.groups == 8
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(1, 3, 64, 64))["res2"].shape == (1, 256, 16, 16)
