"""The documented examples work as written: every Python block of README.md and docs/*.md runs, every shell block
names tools and configs that exist, and the cheap shell blocks run.

A Python block is skipped only when its first line says why, as ``# Not run by the tests: needs a download`` (or a
GPU); a shell block runs when the line before it is ``<!-- run by tests/test_docs.py -->``. Each block runs in a
fresh temporary folder, with this checkout first on ``PYTHONPATH``, so blocks cannot depend on each other. Files the
docs tell the user to make first (an exported model, an image) are made for real and put where the block expects
them (``ARTIFACTS``).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--\s*(?P<mark>[^>]*?)\s*-->\s*\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)```", re.S)
RUN_MARK = "run by tests/test_docs.py"
SKIP_PREFIX = "# Not run by the tests:"


def _blocks(language: str):
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            if match.group("lang") != language:
                continue
            line = text[:match.start("body")].count("\n") + 1
            found.append(pytest.param(match.group("body"), match.group("mark") or "",
                                      id=f"{path.relative_to(ROOT)}:{line}"))
    return found


def _export_quickstart_onnx(folder: Path) -> Path:
    """The quick-start detector (random weights) exported by the documented command, as ``output/export/model.onnx``."""
    config = "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml"
    weights = folder / "weights.pth"
    code = ("import sys; from detectron2.checkpoint import DetectionCheckpointer; "
            "from resnest_backbones.apps.detectron2_train import load_training_config; "
            "from detectron2.modeling import build_model; "
            f"cfg = load_training_config({str(ROOT / config)!r}, ['MODEL.WEIGHTS', '']); "
            f"DetectionCheckpointer(build_model(cfg), save_dir={str(folder)!r}).save('weights')")
    for command in ([sys.executable, "-c", code],
                    [sys.executable, str(ROOT / "tools" / "export_detectron2.py"), "--format", "onnx", "--config-file",
                     str(ROOT / config), "--output", str(folder / "output" / "export"), "--sample-image",
                     str(folder / "image.jpg"), "MODEL.WEIGHTS", str(weights)]):
        result = _run(command, folder)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return folder / "output" / "export" / "model.onnx"


def _image(folder: Path) -> Path:
    from PIL import Image
    import numpy as np
    path = folder / "image.jpg"
    Image.fromarray((np.random.default_rng(0).random((160, 200, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    """Files that docs expect the user to have made, by name in a block: made once, copied per block."""
    folder = tmp_path_factory.mktemp("doc_artifacts")
    made = {}

    def get(name: str) -> Path:
        if name not in made:
            if name == "output/export/model.onnx":
                get("image.jpg")  # the export's sample image
            made[name] = {"image.jpg": _image, "output/export/model.onnx": _export_quickstart_onnx,
                          "onnx_runner.py": lambda f: ROOT / "resnest_backbones" / "onnx_runner.py"}[name](folder)
        return made[name]
    return get


def _provide(body: str, tmp_path: Path, artifacts) -> None:
    needed = [name for name in ("output/export/model.onnx", "image.jpg") if name in body]
    if "from onnx_runner import" in body:
        needed.append("onnx_runner.py")
    for name in needed:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = artifacts(name)
        shutil.copy(source, target)
        if name == "output/export/model.onnx":  # the runner's metadata file, if any, travels with it
            for extra in source.parent.iterdir():
                if extra != source:
                    shutil.copy(extra, target.parent / extra.name)


def _run(command, tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("body,mark", _blocks("python"))
def test_python_block_runs(body, mark, tmp_path, artifacts):
    first = body.lstrip().splitlines()[0] if body.strip() else ""
    if first.startswith(SKIP_PREFIX):
        reason = first[len(SKIP_PREFIX):].strip()
        assert re.search(r"download|GPU|CUDA", reason), f"a block may be skipped only for a download or a GPU: {first}"
        pytest.skip(reason)
    _provide(body, tmp_path, artifacts)
    result = _run([sys.executable, "-c", body], tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def _commands(body: str):
    """The commands of a shell block (comments and continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", body)
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            yield line


@pytest.mark.parametrize("body,mark", _blocks("bash"))
def test_shell_block_names_existing_tools_and_configs(body, mark, tmp_path, artifacts):
    for command in _commands(body):
        words = shlex.split(command.replace("<", "_").replace(">", "_"))
        for word in words:
            if re.fullmatch(r"tools/[\w.]+\.(py|sh)", word) or re.fullmatch(r"configs/[\w./+-]+\.(py|yaml)", word):
                assert (ROOT / word).exists(), f"{word} in `{command}` does not exist"
    if mark != RUN_MARK:
        return
    _provide(body, tmp_path, artifacts)
    for command in _commands(body):
        words = shlex.split(command)
        words = [str(ROOT / w) if re.fullmatch(r"(tools|configs)/\S+", w) else w for w in words]
        if words[0] == "python":
            words[0] = sys.executable
        result = _run(words, tmp_path)
        assert result.returncode == 0, f"`{command}` failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"


def test_readme_layout_names_every_module_and_tool():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Repository layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    modules = {p.name for p in (ROOT / "resnest_backbones").rglob("*.py")
               if p.name != "__init__.py" and "configs" not in p.parts}
    tools = {p.name for p in (ROOT / "tools").iterdir() if p.suffix in (".py", ".sh")}
    missing = sorted(name for name in modules | tools if name not in layout)
    assert not missing, f"README's Repository layout does not name: {missing}"
    folders = {p.name + "/" for p in (ROOT / "resnest_backbones").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert all(folder in layout for folder in folders - {"configs/"}), folders
