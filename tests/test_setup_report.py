"""The set-up reports which detectron2 the ACTIVE environment has, read from the installed package (a compiled
``detectron2._C`` = a real build, a ``detectron2/_C.py`` = the offline fallback's stub), not from a note kept per
machine: two environments on one machine report their own."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def _report(path_first: str = None) -> str:
    env = dict(os.environ)
    if path_first:  # an environment whose detectron2 is the one under path_first
        env["PYTHONPATH"] = path_first
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "setup_check.py"), "--detectron2"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("files,expected", [
    (["__init__.py", "_C.py"], "OFFLINE FALLBACK"),
    (["__init__.py", "_C.cpython-311-x86_64-linux-gnu.so"], "official build"),
    (["__init__.py"], "without a detectron2._C"),
])
def test_report_follows_the_installed_package(tmp_path, files, expected):
    package = tmp_path / "detectron2"
    package.mkdir()
    for name in files:
        (package / name).write_text("")
    report = _report(str(tmp_path))
    assert expected in report and str(package) in report


def test_report_of_this_environment():
    import importlib.util
    package = list(importlib.util.find_spec("detectron2").submodule_search_locations)[0]
    stub = os.path.isfile(os.path.join(package, "_C.py"))
    assert ("OFFLINE FALLBACK" in _report()) == stub
