"""The documented examples work as written: every Python block of README.md and docs/*.md runs, every shell block
names tools and configs that exist, and the cheap shell blocks run.

A Python block is skipped only when its first line says why, as ``# Not run by the tests: needs a download`` (or a
GPU); a shell block runs when the line before it is ``<!-- run by tests/test_docs.py -->``. Each block runs in a
fresh temporary folder, with this checkout first on ``PYTHONPATH``, so blocks cannot depend on each other.
"""
import os
import re
import shlex
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


def _run(command, tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("body,mark", _blocks("python"))
def test_python_block_runs(body, mark, tmp_path):
    first = body.lstrip().splitlines()[0] if body.strip() else ""
    if first.startswith(SKIP_PREFIX):
        reason = first[len(SKIP_PREFIX):].strip()
        assert re.search(r"download|GPU|CUDA", reason), f"a block may be skipped only for a download or a GPU: {first}"
        pytest.skip(reason)
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
def test_shell_block_names_existing_tools_and_configs(body, mark, tmp_path):
    for command in _commands(body):
        words = shlex.split(command.replace("<", "_").replace(">", "_"))
        for word in words:
            if re.fullmatch(r"tools/[\w.]+\.(py|sh)", word) or re.fullmatch(r"configs/[\w./+-]+\.(py|yaml)", word):
                assert (ROOT / word).exists(), f"{word} in `{command}` does not exist"
    if mark != RUN_MARK:
        return
    for command in _commands(body):
        words = shlex.split(command)
        words = [str(ROOT / w) if re.fullmatch(r"(tools|configs)/\S+", w) else w for w in words]
        if words[0] == "python":
            words[0] = sys.executable
        result = _run(words, tmp_path)
        assert result.returncode == 0, f"`{command}` failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
