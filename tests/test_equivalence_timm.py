"""Our ResNeSt equals timm's on random weights and BN statistics, loaded from a saved timm state dict."""
import pytest
import timm  # a test dependency, installed by tools/setup_env.sh: missing means the set-up is broken, not a skip
import torch

import resnest_backbones as rb
from conftest import randomize_norms, rel_err

PAIRS = [("resnest14d", "resnest14"), ("resnest26d", "resnest26"), ("resnest50d", "resnest50"),
         ("resnest101e", "resnest101"), ("resnest50d_4s2x40d", "resnest50_fast_4s2x40d"),
         ("resnest50d_1s4x24d", "resnest50_fast_1s4x24d")]


def _compare(timm_model, ours, x):
    with torch.no_grad():
        theirs = timm_model.forward_intermediates(x, intermediates_only=True)[1:]  # [0] is the stem
        mine = ours.forward_features(x)
    assert list(mine) == ["res2", "res3", "res4", "res5"] and len(theirs) == 4  # zip below would stop early
    for name, a, b in zip(mine, theirs, mine.values()):
        assert rel_err(a, b) <= 1e-5, name


@pytest.mark.parametrize("timm_name,our_name", PAIRS)
def test_matches_timm_features_and_logits(timm_name, our_name, tmp_path):
    torch.manual_seed(0)
    reference = randomize_norms(timm.create_model(timm_name, pretrained=False)).eval()
    path = tmp_path / f"{timm_name}.pth"
    torch.save(reference.state_dict(), path)
    ours = rb.create_model(our_name, num_classes=1000).eval()
    report = rb.load_pretrained(ours, str(path))
    assert report.format == "official" and not report.skipped
    x = torch.randn(2, 3, 96, 128)
    _compare(reference, ours, x)
    with torch.no_grad():
        assert rel_err(reference(x), ours(x)) <= 1e-5


@pytest.mark.parametrize("output_stride", [8, 16])
def test_timm_dilated_layout_matches_timm_output_stride(output_stride):
    torch.manual_seed(1)
    reference = randomize_norms(timm.create_model("resnest50d", output_stride=output_stride)).eval()
    ours = rb.create_model("resnest50", output_stride=output_stride, dilated_layout="timm").eval()
    rb.load_pretrained(ours, reference.state_dict())
    x = torch.randn(1, 3, 81, 113)  # not a multiple of 32 either
    _compare(reference, ours, x)
    strides = [f["stride"] for f in ours.feature_info]
    assert strides == ([4, 8, 8, 8] if output_stride == 8 else [4, 8, 16, 16])
