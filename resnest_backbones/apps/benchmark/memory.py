"""Training memory: the bytes autograd saves for backward (exact), and the peak resident memory of one training step,
measured one model after another in a fresh process (``python -m resnest_backbones.apps.benchmark.memory``, started
by :func:`training_memory_subprocess` with glibc's mmap threshold fixed; see ``peers.py``'s docstring)."""
import argparse
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Dict, List

import torch

from .models import MEMORY_EFFICIENT, WORKLOADS, Entry, build_models, prepare
from .timing import make_input, train_step


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


@contextmanager
def counting_saved_tensors(storages: Dict[int, int]):
    """Record ``{storage pointer: bytes}`` of every tensor autograd saves for backward inside the block (the hook
    hands the tensor itself back: what is kept, and so the memory, is unchanged)."""
    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield


def saved_for_backward_mib(entry: Entry, x: torch.Tensor, amp: bool = False) -> float:
    """MiB of the distinct tensors (storages) autograd saves for backward in one forward pass of ``entry``."""
    storages: Dict[int, int] = {}
    with counting_saved_tensors(storages), torch.autocast(x.device.type, enabled=amp):
        entry.features(x)
    return sum(storages.values()) / 2 ** 20


def measure_training_memory_here(names: List[str], workloads: List[str], channels_last: bool, threads: int,
                                 memory_efficient: bool = True) -> Dict:
    """In this process (started with glibc's mmap threshold fixed), per model and training workload: ``peak``, the
    MiB one training step needs above the RSS before it, and ``saved``, the MiB autograd saves in that step.

    Each model first takes a warm-up step at 2x3x256x256 (one-time allocations: oneDNN, the autograd engine, the
    gradient buffers' first use), then the measured step is its first at the workload's shape (measured: the same
    peak, within 2 MiB, as a second step at that shape, in about half the time)."""
    torch.set_num_threads(threads)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    result: Dict[str, Dict] = {}
    for name in names:
        result[name] = {}
        for workload in workloads:
            entries = build_models([name], training=True, memory_efficient=memory_efficient)
            prepare(entries, workload, torch.device("cpu"), memory_format)
            entry = entries[name]
            train_step(entry, torch.rand(2, 3, 256, 256).contiguous(memory_format=memory_format))
            entry.model.zero_grad(set_to_none=True)
            x = make_input(workload, "cpu", memory_format)
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # resets VmHWM to the current RSS
            before = _rss_kib("VmRSS")
            storages: Dict[int, int] = {}
            with counting_saved_tensors(storages):
                train_step(entry, x)
            result[name][workload] = {"peak": (_rss_kib("VmHWM") - before) / 1024,
                                      "saved": sum(storages.values()) / 2 ** 20}
            del entries, entry, x
    return result


def training_memory_subprocess(names: List[str], workloads: List[str], channels_last: bool, threads: int,
                               memory_efficient: str = "on") -> Dict:
    """``{name: {workload: {"peak": MiB, "saved": MiB}}}``, measured one model after another in one fresh process
    (see the module docstring)."""
    command = [sys.executable, "-m", __name__, *names, "--workloads", *workloads, "--threads", str(threads),
               "--memory-efficient", memory_efficient]
    if channels_last:
        command.append("--channels-last")
    # The child imports this same copy of the package (a checkout or an install).
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536",
               PYTHONPATH=os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"memory measurement of {names} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def training_memory_cuda(entry: Entry, workload: str, device, memory_format, amp: bool) -> float:
    x = make_input(workload, device, memory_format)
    train_step(entry, x, amp)
    entry.model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    train_step(entry, x, amp)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2 ** 20


def main(argv=None) -> None:
    """Print the JSON of :func:`measure_training_memory_here` (run by :func:`training_memory_subprocess`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="+", help="names of benchmark rows (models.build_models)")
    parser.add_argument("--workloads", nargs="+", required=True, choices=list(WORKLOADS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--memory-efficient", choices=list(MEMORY_EFFICIENT), default="on")
    args = parser.parse_args(argv)
    print(json.dumps(measure_training_memory_here(args.models, args.workloads, args.channels_last, args.threads,
                                                  MEMORY_EFFICIENT[args.memory_efficient])))


if __name__ == "__main__":
    main()
