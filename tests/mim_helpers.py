"""Run the frameworks' own tools the way users do (``mim train`` / ``mim test``, ``torchrun``) and read back the
metrics they log. Subprocesses, so each run imports the adapter only through the config's ``custom_imports``."""
import glob
import json
import os
import socket
import subprocess
import sys
import time
from typing import Dict, List, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(command: Sequence[str], env: Dict[str, str], timeout: int = 600) -> Tuple[str, float]:
    """Run ``command`` at the repository root with ``env`` added; return (output, seconds). Fails with its log."""
    start = time.time()
    process = subprocess.run(list(command), cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=timeout)
    output = process.stdout + process.stderr
    assert process.returncode == 0, f"{' '.join(command)} failed ({process.returncode}):\n{output[-6000:]}"
    return output, time.time() - start


def mim(action: str, framework: str, config: str, work_dir: str, options: List[str], env: Dict[str, str],
        checkpoint: str = None, flags: Sequence[str] = ()) -> Tuple[str, float]:
    """``mim <action> <framework> config --work-dir work_dir [--checkpoint c] [flags] --cfg-options options``."""
    command = [sys.executable, "-m", "mim", action, framework, config, "--work-dir", work_dir, *flags]
    if checkpoint:
        command += ["--checkpoint", checkpoint]
    return run(command + (["--cfg-options", *options] if options else []), env)


def _free_port() -> int:
    with socket.socket() as probe:  # another test run on this machine may hold the usual 29500
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun_train(framework: str, config: str, work_dir: str, options: List[str], env: Dict[str, str],
                   nproc: int = 2) -> Tuple[str, float]:
    """``torchrun --nproc_per_node nproc <framework>/.mim/tools/train.py config --launcher pytorch``."""
    port = _free_port()
    package = __import__(framework)
    train_py = os.path.join(os.path.dirname(package.__file__), ".mim", "tools", "train.py")
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={port}",
               train_py, config, "--launcher", "pytorch", "--work-dir", work_dir, "--cfg-options", *options]
    return run(command, env)


def read_train_metrics(work_dir: str, key: str) -> Dict[str, float]:
    """The last validation metrics ``mim train`` logged (``<work_dir>/<time>/vis_data/scalars.json``)."""
    rows = []
    for path in sorted(glob.glob(os.path.join(work_dir, "*", "vis_data", "scalars.json"))):
        with open(path) as handle:
            rows += [json.loads(line) for line in handle if key in line]
    assert rows, f"no {key} logged under {work_dir}"
    return {k: v for k, v in rows[-1].items() if "/" in k or k in ("mIoU", "aAcc", "mAcc")}


def read_test_metrics(work_dir: str) -> Dict[str, float]:
    """The metrics ``mim test`` wrote (``<work_dir>/<time>/<time>.json``)."""
    paths = sorted(glob.glob(os.path.join(work_dir, "*", "*.json")))
    assert paths, f"mim test wrote no metrics under {work_dir}"
    with open(paths[-1]) as handle:
        metrics = json.load(handle)
    return {k: v for k, v in metrics.items() if k not in ("data_time", "time")}
