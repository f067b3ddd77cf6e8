"""The package's layers: a core that imports no framework, adapters that import only what registration needs."""
import subprocess
import sys

import pytest

from conftest import ROOT

FRAMEWORKS = ("detectron2", "mmengine", "mmcv", "mmdet", "mmseg")


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_core_works_with_every_framework_blocked():
    # None in sys.modules makes any import of that name raise ImportError.
    out = _run(f"""
import sys
for name in {FRAMEWORKS!r}:
    sys.modules[name] = None
import torch
import resnest_backbones as rb
from resnest_backbones import checkpoint, convert, export, fast_inference, keymaps, layers, variants
model = rb.create_model("resnest14").eval()
features = model(torch.rand(1, 3, 64, 64))
fused = fast_inference.to_fast_inference(rb.create_model("resnest14").eval())
print(sorted(features), [n for n in sys.modules if n.split(".")[0] in {FRAMEWORKS!r} and sys.modules[n] is not None])
""")
    assert out.strip() == "['res2', 'res3', 'res4', 'res5'] []"


# The frameworks themselves import what they import (mmdet loads detectron2 when present, detectron2 loads PIL);
# what an adapter must not pull in is the project's application code or another adapter.
APPLICATION = ("resnest_backbones.apps", "resnest_backbones.datasets")


@pytest.mark.parametrize("adapter,forbidden", [
    ("resnest_backbones.detectron2", APPLICATION + ("resnest_backbones.openmmlab",)),
    ("resnest_backbones.mmdet", APPLICATION + ("resnest_backbones.detectron2", "resnest_backbones.mmseg")),
    ("resnest_backbones.mmseg", APPLICATION + ("resnest_backbones.detectron2", "resnest_backbones.mmdet")),
])
def test_adapter_import_loads_only_what_registration_needs(adapter, forbidden):
    out = _run(f"""
import sys
import {adapter}
loaded = sorted(n for n in sys.modules if n.startswith({forbidden!r}))
print(loaded)
""")
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("framework,cls", [("mmdet", "MMDetResNeStBackbone"), ("mmseg", "MMSegResNeStBackbone")])
def test_one_import_path_registers_one_class_per_framework(framework, cls):
    out = _run(f"""
import resnest_backbones.{framework} as adapter
from {framework}.registry import MODELS
print(MODELS.get("ResNeStBackbone") is adapter.{cls}, "resnest_backbones.openmmlab.{framework}" in __import__("sys").modules)
""")
    assert out.strip() == "True False"


def test_every_function_of_the_package_and_tools_is_under_60_lines():
    """Files small enough to read in one sitting start with functions that fit on a screen (issue 20)."""
    import ast
    long = []
    for path in sorted([*(ROOT / "resnest_backbones").rglob("*.py"), *(ROOT / "tools").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, "functions of 60 lines or more: " + ", ".join(long)
