"""The wheel carries every module and every shipped config, so configs work from a pip install."""
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from mmengine.config import Config

import resnest_backbones as rb
from conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the source tree without build outputs: setuptools reuses an existing build/,
    where files from an earlier build would hide a file that the packaging no longer ships."""
    source = tmp_path_factory.mktemp("source") / "resnest_backbones"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "data", "output", "work_dirs"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(source)], check=True, cwd=out)
    return next(out.glob("resnest_backbones-*.whl"))


def test_wheel_ships_all_packages_and_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "resnest_backbones").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    configs = {"resnest_backbones/" + str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*")
               if p.is_file() and p.suffix in (".py", ".yaml")}
    assert configs and configs <= names, sorted(configs - names)


def test_config_path_finds_shipped_configs():
    some = next((ROOT / "configs").rglob("*.yaml"), None) or next((ROOT / "configs").rglob("*.py"))
    relative = str(some.relative_to(ROOT / "configs"))
    assert Path(rb.config_path(relative)).read_bytes() == some.read_bytes()


def test_openmmlab_configs_load_from_the_installed_layout(wheel, tmp_path):
    """The configs' relative `_base_` paths (their shared bases in _base_/) resolve where pip installs them, and
    give the same config as in the checkout."""
    zipfile.ZipFile(wheel).extractall(tmp_path)
    installed = tmp_path / "resnest_backbones" / "configs"
    folders = ("mmdet", "mmseg", "mmdeploy/mmdet", "mmdeploy/mmseg")  # deploy configs: mmdeploy's config layout
    paths = sorted(p for folder in folders for p in (installed / folder).glob("*.py"))
    assert len(paths) == len([p for folder in folders for p in (ROOT / "configs" / folder).glob("*.py")])
    for path in paths:
        config = Config.fromfile(str(path)).to_dict()
        assert config == Config.fromfile(str(ROOT / "configs" / path.relative_to(installed))).to_dict(), path.name


def test_every_config_named_in_docs_and_code_is_shipped():
    """config_path("...") examples and configs/... paths in the README, docs, package, tools and configs name files
    that exist (placeholders such as <name> or x.yaml aside)."""
    sources = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "resnest_backbones").rglob("*.py"),
               *(ROOT / "tools").glob("*"), *(ROOT / "configs").rglob("*.py"), *(ROOT / "configs").rglob("*.yaml")]
    named = re.compile(r"config_path\(\s*[\"']([^\"'<>{}]+)[\"']"  # config_path("mmdet/...")
                       r"|configs/((?:detectron2|mmdet|mmseg|mmdeploy)/[\w.+/-]+\.(?:py|yaml))")  # configs/mmdet/...
    checked, missing = 0, []
    for source in sources:
        if not source.is_file():
            continue
        for match in named.finditer(source.read_text()):
            relative = match.group(1) or match.group(2)
            if Path(relative).stem == "x":  # placeholder
                continue
            checked += 1
            if not (ROOT / "configs" / relative).exists():
                missing.append(f"{source.relative_to(ROOT)}: {relative}")
    assert checked > 20 and not missing, missing


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel pip-installed into a fresh virtual environment that sees this machine's packages (torch and the
    frameworks) but not the checkout: what a user has after ``pip install resnest_backbones``."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(wheel)],
                   check=True, cwd=str(venv))
    return venv


def _installed_run(venv, command, cwd, timeout=600):
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run(command, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)


def test_every_tool_is_a_console_entry_that_runs_from_an_install(installed, tmp_path):
    import setuptools  # noqa: F401  (setup.py's constants, read without running setup())
    source = (ROOT / "setup.py").read_text()
    scripts = dict(line.strip().strip('",').split("=", 1) for line in re.findall(r'"resnest-[^"]+"', source))
    launchers = {path.stem for path in (ROOT / "tools").glob("*.py")} - {
        "_checkout", "setup_check", "detectron2_offline_C", "measure_quickstarts"}  # set-up and measurement aids
    for tool in launchers:  # every launcher's function is installed under the tool's name
        text = (ROOT / "tools" / f"{tool}.py").read_text()
        module, function = re.search(r"from resnest_backbones\.(\S+) import (\w+)", text).groups()
        assert f"resnest_backbones.{module}:{function}" in scripts.values(), tool
    probe = _installed_run(installed, [str(installed / "bin" / "python"), "-c",
                                       "import resnest_backbones; print(resnest_backbones.__file__)"], tmp_path)
    assert str(installed) in probe.stdout, probe.stdout + probe.stderr  # the installed copy, not the checkout
    for name in scripts:
        result = _installed_run(installed, [str(installed / "bin" / name), "--help"], tmp_path)
        assert result.returncode == 0 and "usage:" in result.stdout, name + result.stdout[-500:] + result.stderr[-2000:]


def test_main_job_runs_from_an_install_without_a_checkout(installed, tmp_path):
    """``resnest-train-net`` with the quick start's shipped config name, from an empty folder: makes the dataset,
    trains, evaluates (a few iterations on tiny images)."""
    options = ["MODEL.RESNEST.VARIANT", "resnest14", "DATASETS.SYNTHETIC.ROOT", str(tmp_path / "data"),
               "DATASETS.SYNTHETIC.NUM_TRAIN", "4", "DATASETS.SYNTHETIC.NUM_VAL", "2",
               "DATASETS.SYNTHETIC.IMAGE_SIZE", "96", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96",
               "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96", "SOLVER.MAX_ITER", "2",
               "DATALOADER.NUM_WORKERS", "0", "TEST.VIS_IMAGES", "0", "OUTPUT_DIR", str(tmp_path / "out")]
    result = _installed_run(installed, [str(installed / "bin" / "resnest-train-net"), "--config-file",
                                        "quickstart_mask_rcnn_s14_synthetic.yaml", *options], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (tmp_path / "out" / "model_final.pth").is_file() and (tmp_path / "out" / "eval_results.json").is_file()
