"""Every tracer reads the core: ``torch.fx`` (and torchvision's and timm's FX feature extraction on top of it),
TorchScript, ONNX; torchvision's detection models take it as a backbone; the package has no import cycle.

Each variant is traced with one block per stage (depth changes nothing a tracer sees) in eval and in train mode,
with DropBlock on in train mode, and the traced module must compute what the eager model computes.
"""
import ast
import copy
from pathlib import Path

import pytest
import torch
from timm.models._features_fx import FeatureGraphNet
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.feature_extraction import create_feature_extractor

import resnest_backbones as rb
from conftest import ROOT, randomize_norms

OPTIONS = {"radix0": dict(radix=0), "dilated_os8": dict(output_stride=8), "group_norm": dict(norm_layer="GN"),
           "frozen_bn_frozen_stages": dict(norm_layer="FrozenBN", frozen_stages=2),
           "resnet_stem": dict(deep_stem=False, avg_down=False), "with_cp": dict(with_cp=True)}
MODELS = {**{name: (name, {}) for name in rb.list_models()},
          **{option: ("resnest14", kwargs) for option, kwargs in OPTIONS.items()}}


def _model(name: str, mode: str) -> torch.nn.Module:
    variant, options = MODELS[name]
    options = dict(layers=[1, 1, 1, 1], drop_block_prob=0.2 if mode == "train" else 0.0, **options)
    model = randomize_norms(rb.create_model(variant, **options))
    return model.train() if mode == "train" else model.eval()


def _same(traced, eager, x: torch.Tensor) -> None:
    """``traced(x)`` equals ``eager(x)`` (both drawing the same DropBlock masks in train mode)."""
    torch.manual_seed(0)
    expected = eager(x)
    torch.manual_seed(0)
    got = traced(x)
    expected = list(expected.values()) if isinstance(expected, dict) else list(expected)
    got = list(got.values()) if isinstance(got, dict) else list(got)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def _selected(model, names):
    def run(x):
        features = model(x)  # one forward: in train mode each draws new DropBlock masks
        return [features[name] for name in names]
    return run


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fx_torchvision_and_timm_feature_extraction(name, mode):
    model = _model(name, mode)
    x = torch.randn(2, 3, 64, 64)
    _same(torch.fx.symbolic_trace(model), model, x)
    extractor = create_feature_extractor(model, return_nodes={"layer2": "c3", "layer4": "c5"})
    features = extractor(x)
    assert [tuple(v.shape[1:2]) for v in features.values()] == [(512,), (2048,)]
    # timm's features_only FX mode reads the model's feature_info (its num_chs / reduction names).
    _same(FeatureGraphNet(model, out_indices=(1, 3)), _selected(model, ("res3", "res5")), x)


def test_fx_graph_keeps_the_input_checks():
    graph = torch.fx.symbolic_trace(rb.create_model("resnest14").train())
    assert "check_input_shape" in graph.code and "check_input_batch_and_dtype" in graph.code
    with pytest.raises(ValueError, match="training batch of 1 image"):
        graph(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"use x.permute\(0, 3, 1, 2\)"):
        graph(torch.rand(2, 64, 64, 3))


def test_scripting_and_tracing_every_variant():
    x = torch.randn(2, 3, 64, 64)
    for name in rb.list_models():
        model = _model(name, "eval")
        scripted = torch.jit.script(copy.deepcopy(model))
        traced = torch.jit.trace(model, x, strict=False, check_trace=False)
        _same(scripted, model, x)
        _same(traced, model, x)


def test_torchvision_mask_rcnn_on_backbone_with_fpn():
    body = rb.create_model("resnest14").eval()
    backbone = BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                               in_channels_list=[256, 512, 1024, 2048], out_channels=64)
    model = MaskRCNN(backbone, num_classes=3, min_size=128, max_size=160, box_score_thresh=0.0).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        detections = model([torch.rand(3, 120, 150)])[0]
    assert set(detections) == {"boxes", "labels", "scores", "masks"}
    assert detections["masks"].shape[-2:] == (120, 150)
    model.train()  # and it trains: the losses of a step on a batch of two
    targets = [dict(boxes=torch.tensor([[10.0, 10.0, 60.0, 70.0]]), labels=torch.tensor([1]),
                    masks=torch.zeros(1, 120, 150, dtype=torch.uint8)) for _ in range(2)]
    losses = model([torch.rand(3, 120, 150), torch.rand(3, 120, 150)], targets)
    sum(losses.values()).backward()
    assert body.conv1[0].weight.grad is not None and torch.isfinite(body.conv1[0].weight.grad).all()


def _package_imports(path: Path, package: str, modules) -> set:
    """Modules of ``package`` that ``path`` imports, at module level or inside functions. ``from . import x``
    needs the module ``x`` where ``x`` is one (the package object exists already), else the package's names."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if module.endswith(".__init__"):
        module = module[: -len(".__init__")]
    parent = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = parent
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            submodules = {f"{target}.{alias.name}" for alias in node.names} & set(modules)
            found.update(submodules if submodules and len(submodules) == len(node.names) else {target})
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == package}


def test_no_import_cycle_in_the_package():
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).replace(".__init__", ""): p
             for p in (ROOT / "resnest_backbones").rglob("*.py") if "configs" not in p.parts}
    graph = {name: {m for m in _package_imports(path, "resnest_backbones", files) if m in files and m != name}
             for name, path in files.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(files):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
    assert "resnest_backbones.fast_inference" not in graph["resnest_backbones.resnest"]
    assert "resnest_backbones.memory_efficient" not in graph["resnest_backbones.resnest"]
