"""The wheel carries every module and every shipped config, so configs work from a pip install."""
import subprocess
import sys
import zipfile
from pathlib import Path

import resnest_backbones as rb
from conftest import ROOT


def test_wheel_ships_all_packages_and_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("resnest_backbones-*.whl"))
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
