"""Dilated ResNeSt (output stride 8 / 16) in the official layout, checked against a functional reference written
here from the official code's description, independent of the package's modules.

Official layout: stages 3-4 (OS8) or 4 (OS16) get stride 1 and dilation 2 / 4; the first block of a dilated stage
uses the contracted dilation (1 for 2, 2 for 4) and still applies the 3x3 stride-1 average pool ("avd", because the
official code marks the first block of stages 2-4 ``is_first``); the avg-down shortcut pools with kernel 1 there.
"""
import pytest
import torch
import torch.nn.functional as F

import resnest_backbones as rb
from conftest import randomize_norms, rel_err


def _bn(sd, prefix, x):
    return F.batch_norm(x, sd[prefix + ".running_mean"], sd[prefix + ".running_var"], sd[prefix + ".weight"],
                        sd[prefix + ".bias"], False, 0.0, 1e-5)


def _split_attention(sd, p, x, stride, dilation, radix, cardinality):
    x = F.conv2d(x, sd[p + ".conv.weight"], None, stride, dilation, dilation, cardinality * radix)
    x = F.relu(_bn(sd, p + ".bn0", x))
    splits = torch.chunk(x, radix, dim=1)  # radix-major
    gap = F.adaptive_avg_pool2d(sum(splits), 1)
    gap = F.relu(_bn(sd, p + ".bn1", F.conv2d(gap, sd[p + ".fc1.weight"], sd[p + ".fc1.bias"], groups=cardinality)))
    att = F.conv2d(gap, sd[p + ".fc2.weight"], sd[p + ".fc2.bias"], groups=cardinality)
    batch = x.shape[0]
    att = F.softmax(att.view(batch, cardinality, radix, -1).transpose(1, 2), dim=1).reshape(batch, -1, 1, 1)
    return sum(a * s for a, s in zip(torch.chunk(att, radix, dim=1), splits))


def official_reference(sd, x, layers, output_stride, radix=2, cardinality=1):
    for conv, bn in (("conv1.0", "conv1.1"), ("conv1.3", "conv1.4")):
        x = F.relu(_bn(sd, bn, F.conv2d(x, sd[conv + ".weight"], None, 2 if conv == "conv1.0" else 1, 1)))
    x = F.max_pool2d(F.relu(_bn(sd, "bn1", F.conv2d(x, sd["conv1.6.weight"], None, 1, 1))), 3, 2, 1)
    if output_stride == 8:
        strides, dilations = [1, 2, 1, 1], [1, 1, 2, 4]
    else:
        strides, dilations = [1, 2, 2, 1], [1, 1, 1, 2]
    outputs = []
    for stage, (n, stride, dilation) in enumerate(zip(layers, strides, dilations)):
        for block in range(n):
            p = f"layer{stage + 1}.{block}"
            s = stride if block == 0 else 1
            d = ({1: 1, 2: 1, 4: 2}[dilation]) if block == 0 else dilation
            shortcut = x
            if p + ".downsample.1.weight" in sd:
                pooled = F.avg_pool2d(x, s, s, ceil_mode=True, count_include_pad=False) if dilation == 1 else x
                shortcut = _bn(sd, p + ".downsample.2", F.conv2d(pooled, sd[p + ".downsample.1.weight"]))
            out = F.relu(_bn(sd, p + ".bn1", F.conv2d(x, sd[p + ".conv1.weight"])))
            avd = s > 1 or (block == 0 and stage > 0)
            out = _split_attention(sd, p + ".conv2", out, 1 if avd else s, d, radix, cardinality)
            if avd:
                out = F.avg_pool2d(out, 3, s, 1)
            out = _bn(sd, p + ".bn3", F.conv2d(out, sd[p + ".conv3.weight"]))
            x = F.relu(out + shortcut)
        outputs.append(x)
    return outputs


@pytest.mark.parametrize("output_stride", [8, 16])
def test_official_dilated_layout_matches_reference(output_stride):
    torch.manual_seed(2)
    model = randomize_norms(rb.create_model("resnest26", output_stride=output_stride)).eval()
    x = torch.randn(1, 3, 75, 90)
    with torch.no_grad():
        ours = list(model.forward_features(x).values())
        reference = official_reference(model.state_dict(), x, [2, 2, 2, 2], output_stride)
    assert len(reference) == len(ours) == 4  # zip below would stop early
    for a, b in zip(reference, ours):
        assert rel_err(a, b) <= 1e-5


def test_layouts_differ_only_where_documented():
    torch.manual_seed(3)
    x = torch.randn(1, 3, 64, 64)
    outputs, state = {}, None
    for layout in ("official", "mmseg", "timm"):
        model = randomize_norms(rb.create_model("resnest14", output_stride=8, dilated_layout=layout)).eval()
        if state is None:
            state = model.state_dict()  # every layout gets the first model's weights
        else:
            rb.load_pretrained(model, state)
        with torch.no_grad():
            outputs[layout] = model.forward_features(x)
    for name in ("res2", "res3"):  # strided stages: identical
        assert rel_err(outputs["official"][name], outputs["mmseg"][name]) == 0
        assert rel_err(outputs["official"][name], outputs["timm"][name]) == 0
    for other in ("mmseg", "timm"):  # dilated stages: the first block differs
        assert rel_err(outputs["official"]["res4"], outputs[other]["res4"]) > 1e-3
    assert rel_err(outputs["mmseg"]["res4"], outputs["timm"]["res4"]) > 1e-3


def test_unknown_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="dilated_layout must be one of"):
        rb.create_model("resnest14", output_stride=8, dilated_layout="deeplab")
