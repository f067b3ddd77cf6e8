"""Timing: interleaved rounds with medians, optionally one process per model, and the call each workload times."""
import multiprocessing
import statistics
import time
from typing import Callable, Dict

import torch

from .models import SHAPES, TRAINING, Entry, build_models, prepare


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(entry: Entry, x: torch.Tensor, amp: bool = False):
    entry.model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, enabled=amp):
        loss = sum(f.float().mean() for f in entry.features(x))
    loss.backward()


def time_interleaved(calls: Dict[str, Callable[[], object]], device, warmup: int, repeats: int) -> Dict[str, float]:
    """Median seconds per call of each named call; the calls run one after another in each round so load changes
    hit all of them, and the order rotates from round to round so that no model always follows the same one
    (allocator and cache state left by the previous model moved single ratios by several percent). A call may return
    the time it measured itself (a :class:`ModelProcess` step); otherwise it is timed here."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    synchronize(device)
    times = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            synchronize(device)
            start = time.perf_counter()
            elapsed = call()  # a ModelProcess call returns the time its process measured
            synchronize(device)
            times[name].append(elapsed if elapsed is not None else time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _model_worker(connection, name: str, workload: str, device: str, channels_last: bool, amp: bool,
                  memory_efficient: bool, threads: int) -> None:
    """Body of a :class:`ModelProcess`: build one model, then time one call of it per request."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    entries = build_models([name], training=workload in TRAINING, memory_efficient=memory_efficient)
    prepare(entries, workload, device, memory_format)
    call = workload_call(entries[name], workload, device, memory_format, amp)
    connection.send("ready")
    while connection.recv():
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        connection.send(time.perf_counter() - start)


class ModelProcess:
    """One model in a process of its own, stepped by the parent (``--process-per-model``). The rounds still
    interleave the models, but no model runs on a heap that the others grew, fragmented or trimmed: in one shared
    process the C library's allocator state left by the previous model moved our training step by up to +-10% through
    page faults alone. Training runs one model per process too."""

    def __init__(self, name: str, workload: str, device: torch.device, memory_format, amp: bool,
                 memory_efficient: bool, threads: int):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_model_worker, daemon=True, args=(
            child, name, workload, str(device), memory_format == torch.channels_last, amp, memory_efficient, threads))
        self.process.start()
        if self.connection.recv() != "ready":
            raise RuntimeError(f"the process of {name} did not start")

    def step(self) -> float:
        self.connection.send(True)
        return self.connection.recv()

    def close(self) -> None:
        self.connection.send(False)
        self.process.join()


def make_input(workload: str, device, memory_format) -> torch.Tensor:
    batch, height, width = SHAPES[workload]
    return torch.rand(batch, 3, height, width, device=device).contiguous(memory_format=memory_format)


def inference_call(entry: Entry, workload: str, device, memory_format, amp: bool):
    x = make_input(workload, device, memory_format)

    def call():
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            entry.inference(x, workload)
    return call


def training_call(entry: Entry, workload: str, device, memory_format, amp: bool):
    x = make_input(workload, device, memory_format)
    return lambda: train_step(entry, x, amp)


def workload_call(entry: Entry, workload: str, device, memory_format, amp: bool):
    """The call that one timed run of ``workload`` makes: a training step or an inference forward."""
    make_call = training_call if workload in TRAINING else inference_call
    return make_call(entry, workload, device, memory_format, amp)
