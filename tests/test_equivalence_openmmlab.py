"""Our ResNeSt equals mmdet's and mmseg's own ``ResNeSt`` (random weights and BN statistics, eval mode), loaded
from a file saved as mmengine saves a detector (``state_dict`` wrapper, ``backbone.`` prefix)."""
import pytest
import torch
from mmdet.models.backbones import ResNeSt as MMDetResNeSt  # required: installed by tools/setup_env.sh
from mmseg.models.backbones import ResNeSt as MMSegResNeSt

import resnest_backbones as rb
from conftest import randomize_norms, rel_err


def _save_like_mmengine(backbone, path):
    torch.save({"meta": {"epoch": 12}, "state_dict": {"backbone." + k: v for k, v in backbone.state_dict().items()}},
               path)


def _compare(reference, ours, x):
    with torch.no_grad():
        theirs = reference(x)
        mine = list(ours.forward_features(x).values())
    assert len(theirs) == len(mine) == 4
    for a, b in zip(theirs, mine):
        assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize("depth,variant,stem_channels", [(50, "resnest50", 64), (101, "resnest101", 128)])
def test_matches_mmdet_resnest(depth, variant, stem_channels, tmp_path):
    torch.manual_seed(depth)
    reference = randomize_norms(MMDetResNeSt(depth=depth, stem_channels=stem_channels))
    reference.eval()  # mmdet's ResNet.train() returns None, so no chaining
    _save_like_mmengine(reference, tmp_path / "mmdet.pth")
    ours = rb.create_model(variant).eval()
    assert rb.load_pretrained(ours, str(tmp_path / "mmdet.pth")).format == "openmmlab"
    _compare(reference, ours, torch.randn(1, 3, 96, 80))


def test_matches_mmseg_resnest_dilated_d8(tmp_path):
    torch.manual_seed(7)
    reference = randomize_norms(MMSegResNeSt(depth=50, stem_channels=64, dilations=(1, 1, 2, 4),
                                             strides=(1, 2, 1, 1), contract_dilation=True))
    reference.eval()
    _save_like_mmengine(reference, tmp_path / "mmseg.pth")
    ours = rb.create_model("resnest50", output_stride=8, dilated_layout="mmseg").eval()
    rb.load_pretrained(ours, str(tmp_path / "mmseg.pth"))
    _compare(reference, ours, torch.randn(1, 3, 72, 88))
