#!/usr/bin/env python
"""Benchmark ResNeSt-50 (ours) against timm, mmdet and torchvision ResNet-50, in one process, one table per workload.

Every model gets the same inputs, dtype, mode and memory format within a table. Models are interleaved (one run of
each, round after round) and medians are reported, so background load hits all of them alike; ratios compare numbers
of the same run. ``--process-per-model`` keeps the rounds but gives each model a process of its own (as in
training), so that no model's time depends on the heap the others left behind. Before any time is reported, the
outputs of our model, our fast path, timm's and mmdet's (all holding the same weights) are checked equal.

Workloads (``--workloads``):
    cls        8x3x224x224, eval, no_grad; the full classifier where the model has one (mmdet's is a backbone only:
               its row runs the backbone). Rows: ours plain eager, ours fast path (``to_fast_inference``), peers.
    det        1x3x800x1216, eval, no_grad, backbone features (all four stages); same rows.
    train      2x3x512x512, train-mode BN everywhere (mmdet ``norm_eval=False``), forward + backward of the sum of the
               four stages' means, parameter gradients set to None before each step. Rows: ours with the
               training formulation (``memory_efficient=True``, opt-in: ``resnest_backbones.memory_efficient``),
               ours plain eager (``memory_efficient=False``, the default), timm, mmdet, torchvision.
    train_det  2x3x800x1216, as ``train`` with the stem and res2 frozen (detectron2's FREEZE_AT=2: no gradients,
               FrozenBatchNorm2d there, train-mode BN in res3-res5). Batch 2: with train-mode BN a batch of one
               fails in split attention's BN over 1x1 maps (any ResNeSt implementation).

Training memory, two numbers per model: "saved MiB", exact and load-independent: the bytes of the distinct tensors
autograd saves for backward in one forward pass (``torch.autograd.graph.saved_tensors_hooks``; parameters included);
"peak MiB" (CPU): the models one after another in one fresh subprocess with glibc's mmap threshold fixed at 64 KiB
(``MALLOC_MMAP_THRESHOLD_``), so that every tensor buffer is mapped on allocation and unmapped on free and the
resident set follows live memory; after a warm-up step at 2x3x256x256 the kernel's high-water mark is reset
(``/proc/self/clear_refs``), a step at the workload's shape runs, and the number is ``VmHWM`` minus the RSS before
that step: what the step itself needed (saved activations, gradients, workspaces). The saved bytes are counted in
the same step. On CUDA: ``torch.cuda.max_memory_allocated`` over the step minus
what was allocated before.

Other outputs: ``--plot`` draws batch-1 latency against GMACs and parameters of every variant (with a params/GMACs
table, fvcore's count: one multiply-add = one flop); ``--memory-plot`` draws the saved training activations of every
variant (training formulation and plain eager) against ResNet-50, timm and mmdet. ``tools/benchmark_compile.py``
times the ``torch.compile``d training step.

Usage:
    python tools/benchmark.py --workloads train train_det --threads 2        # the training tables
    python tools/benchmark.py --workloads cls det --channels-last --threads 2  # the inference tables
    python tools/benchmark.py --device cuda --amp                             # on a GPU, with autocast rows
"""
import argparse
import copy
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import resnest_backbones as rb  # noqa: E402
from resnest_backbones.fast_inference import to_fast_inference  # noqa: E402
from resnest_backbones.keymaps import official_to_openmmlab  # noqa: E402
from resnest_backbones.layers import FrozenBatchNorm2d  # noqa: E402
from resnest_backbones.memory_efficient import set_memory_efficient  # noqa: E402

OURS, PLAIN, FAST = "ResNeSt-50 ours memory_efficient", "ResNeSt-50 ours plain eager", "ResNeSt-50 ours fast path"
TIMM, MMDET, TV = "timm resnest50d", "mmdet ResNeSt-50", "torchvision resnet50"
PEER_RESNESTS = (TIMM, MMDET)
TRAINING = ("train", "train_det")
WORKLOADS = {"cls": (8, 224, 224), "det": (1, 800, 1216), "train": (2, 512, 512), "train_det": (2, 800, 1216)}
SHAPES = dict(WORKLOADS, cls_b1=(1, 224, 224))  # cls_b1: batch-1 latency of the variant sweep
MEMORY_EFFICIENT = {"on": True, "off": False}
STEM_AND_RES2 = {OURS: ("conv1", "bn1", "layer1"), PLAIN: ("conv1", "bn1", "layer1"),
                 TIMM: ("conv1", "bn1", "layer1"), TV: ("conv1", "bn1", "layer1"),
                 MMDET: ("stem", "layer1")}


# ----------------------------------------------------------------------------------------------------------- models
def _stages(x: torch.Tensor, stem: Callable, stages) -> List[torch.Tensor]:
    x = stem(x)
    outputs = []
    for stage in stages:
        x = stage(x)
        outputs.append(x)
    return outputs


class Entry:
    """One benchmarked model: ``features(x)`` returns the four stages, ``classify(x)`` the logits (or None)."""

    def __init__(self, name: str, model: nn.Module, features: Callable, classify: Optional[Callable]):
        self.name, self.model, self.features, self.classify = name, model, features, classify

    def inference(self, x: torch.Tensor, workload: str):
        if workload.startswith("cls") and self.classify is not None:
            return self.classify(x)
        return self.features(x)


def freeze_stem_and_res2(entry: Entry) -> None:
    """detectron2's FREEZE_AT=2 on any of the models: no gradients and FrozenBatchNorm2d in the stem and res2."""
    for name in STEM_AND_RES2[entry.name]:
        module = FrozenBatchNorm2d.convert_frozen_batchnorm(getattr(entry.model, name))
        setattr(entry.model, name, module)
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def build_models(names: Optional[List[str]] = None, training: bool = False,
                 memory_efficient: bool = True) -> Dict[str, Entry]:
    """The models of ``names`` (default: all of the inference or training rows); the four ResNeSts hold the same
    weights (timm's random init copied into ours, mmdet's loaded through the OpenMMLab key layout).
    ``memory_efficient`` switches the training formulation of the "ours memory_efficient" row."""
    import timm
    import torchvision

    names = names or ([OURS, PLAIN, TIMM, MMDET, TV] if training else [PLAIN, FAST, TIMM, MMDET, TV])
    timm_model = timm.create_model("resnest50d", num_classes=1000)
    ours = rb.create_model("resnest50", num_classes=1000)
    rb.load_pretrained(ours, timm_model.state_dict())
    entries = {}
    for name in (OURS, PLAIN, FAST):
        if name in names:
            model = copy.deepcopy(ours)
            if name == OURS:
                set_memory_efficient(model, memory_efficient)
            elif name == FAST:
                model = to_fast_inference(model.eval())
            entries[name] = Entry(name, model, lambda x, m=model: list(m.forward_features(x).values()), model)
    if TIMM in names:
        m = timm_model
        entries[TIMM] = Entry(TIMM, m, lambda x: _stages(x, lambda x: m.maxpool(m.act1(m.bn1(m.conv1(x)))),
                                                         (m.layer1, m.layer2, m.layer3, m.layer4)), m)
    if MMDET in names:
        from mmdet.models.backbones import ResNeSt as MMDetResNeSt

        # norm_eval=False: mmdet's default keeps BN in eval mode during training, which would not be the same work.
        mmdet = MMDetResNeSt(depth=50, stem_channels=64, norm_eval=False, frozen_stages=-1)
        backbone_state = official_to_openmmlab({k: v for k, v in ours.state_dict().items() if not k.startswith("fc.")})
        mmdet.load_state_dict(backbone_state, strict=False)
        missing = set(mmdet.state_dict()) - set(backbone_state)
        if missing:
            raise RuntimeError(f"mmdet ResNeSt keys not loaded: {sorted(missing)[:5]}")
        entries[MMDET] = Entry(MMDET, mmdet, lambda x: list(mmdet(x)), None)
    if TV in names:
        tv = torchvision.models.resnet50()
        entries[TV] = Entry(TV, tv, lambda x: _stages(x, lambda x: tv.maxpool(tv.relu(tv.bn1(tv.conv1(x)))),
                                                      (tv.layer1, tv.layer2, tv.layer3, tv.layer4)), tv)
    return entries


def prepare(entries: Dict[str, Entry], workload: str, device, memory_format) -> None:
    for entry in entries.values():
        if workload == "train_det":
            freeze_stem_and_res2(entry)
        entry.model.to(device=device, memory_format=memory_format)
        entry.model.train(workload in TRAINING)


def check_outputs_equal(entries: Dict[str, Entry], device: torch.device) -> float:
    """Raise unless fast path, timm (and mmdet) agree with our plain eager model on features and logits (eval
    mode); return the worst relative error."""
    x = torch.rand(2, 3, 224, 224, device=device)
    reference_entry = entries[PLAIN]
    with torch.no_grad():
        reference = reference_entry.features(x) + [reference_entry.classify(x)]
        worst = 0.0
        for name in (FAST, TIMM, MMDET):
            if name not in entries:
                continue
            entry = entries[name]
            outputs = entry.features(x) + ([entry.classify(x)] if entry.classify is not None else [])
            for out, ref in zip(outputs, reference):
                error = ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
                worst = max(worst, error)
                if not error <= 1e-4:
                    raise SystemExit(f"{name} differs from {PLAIN}: relative error {error:.2e}; no timing reported")
    return worst


# ----------------------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(entry: Entry, x: torch.Tensor, amp: bool = False):
    entry.model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, enabled=amp):
        loss = sum(f.float().mean() for f in entry.features(x))
    loss.backward()


def time_interleaved(entries: List[Entry], make_call: Callable[[Entry], Callable[[], None]], device, warmup: int,
                     repeats: int) -> Dict[str, float]:
    """Median seconds per call; models run one after another in each round so load changes hit all of them, and
    the order rotates from round to round so that no model always follows the same one (allocator and cache state
    left by the previous model moved single ratios by several percent)."""
    calls = {entry.name: make_call(entry) for entry in entries}
    for _ in range(warmup):
        for call in calls.values():
            call()
    _sync(device)
    times = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            _sync(device)
            start = time.perf_counter()
            elapsed = call()  # a ModelProcess call returns the time its process measured
            _sync(device)
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
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
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


def _input(workload: str, device, memory_format) -> torch.Tensor:
    batch, height, width = SHAPES[workload]
    return torch.rand(batch, 3, height, width, device=device).contiguous(memory_format=memory_format)


def inference_call(entry: Entry, workload: str, device, memory_format, amp: bool):
    x = _input(workload, device, memory_format)

    def call():
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            entry.inference(x, workload)
    return call


def training_call(entry: Entry, workload: str, device, memory_format, amp: bool):
    x = _input(workload, device, memory_format)
    return lambda: train_step(entry, x, amp)


def workload_call(entry: Entry, workload: str, device, memory_format, amp: bool):
    """The call that one timed run of ``workload`` makes: a training step or an inference forward."""
    make_call = training_call if workload in TRAINING else inference_call
    return make_call(entry, workload, device, memory_format, amp)


# ----------------------------------------------------------------------------------------------------------- memory
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
            x = _input(workload, "cpu", memory_format)
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
    command = [sys.executable, os.path.abspath(__file__), "--_memory-of", *names, "--workloads", *workloads,
               "--threads", str(threads), "--memory-efficient", memory_efficient]
    if channels_last:
        command.append("--channels-last")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"memory measurement of {names} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def training_memory_cuda(entry: Entry, workload: str, device, memory_format, amp: bool) -> float:
    x = _input(workload, device, memory_format)
    train_step(entry, x, amp)
    entry.model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    train_step(entry, x, amp)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2 ** 20


# ----------------------------------------------------------------------------------------------------------- profile
PROFILE_GROUPS = (  # (group, substrings of aten/mkldnn op names), first match wins
    ("conv backward", ("convolution_backward", "conv2d_backward", "conv_depthwise2d_backward")),
    ("conv forward", ("convolution", "conv2d")),
    ("BN backward", ("batch_norm_backward",)),
    ("BN forward", ("batch_norm",)),
    ("ReLU fwd+bwd", ("relu", "threshold", "clamp")),
    ("pools fwd+bwd", ("pool",)),
    ("split attention / residual element-wise", ("mul", "add", "sum", "mean", "softmax", "sigmoid", "div", "fill",
                                                 "copy", "where")),
)


def profile_rows(entries: Dict[str, Entry], workload: str, device, memory_format, amp: bool) -> List[Dict]:
    """Self CPU time of one training step per op group and model (torch.profiler; warm-up step first)."""
    from torch.profiler import ProfilerActivity, profile

    rows = []
    for name, entry in entries.items():
        x = _input(workload, device, memory_format)
        train_step(entry, x, amp)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(entry, x, amp)
        groups = {group: 0.0 for group, _ in PROFILE_GROUPS}
        groups["other"] = 0.0
        for event in prof.key_averages():
            if not event.key.startswith(("aten::", "mkldnn::")):
                continue
            op = event.key.split("::", 1)[1]
            group = next((g for g, keys in PROFILE_GROUPS if any(k in op for k in keys)), "other")
            groups[group] += event.self_cpu_time_total / 1000
        total = sum(groups.values())
        row = {"model": name, "total ms": f"{total:.0f}"}
        row.update({group: f"{ms:.0f} ({100 * ms / total:.0f}%)" for group, ms in groups.items()})
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------- report
def format_table(rows: List[Dict], columns: List[str]) -> str:
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[i]) for cell in cells)) for i, column in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(cell, widths)) + " |" for cell in cells]
    return "\n".join(lines)


def ratio_rows(workload: str, label: str, medians: Dict[str, float], memory: Optional[Dict[str, float]] = None,
               saved: Optional[Dict[str, float]] = None) -> List[Dict]:
    peers = [medians[name] for name in PEER_RESNESTS if name in medians]
    rows = []
    for name, seconds in medians.items():
        shown = workload + (" (mmdet: features)" if workload == "cls" and MMDET in medians else "")
        row = {"workload": shown, "setting": label, "model": name, "median ms": f"{seconds * 1000:.1f}"}
        if TV in medians:
            row["x resnet50"] = f"{seconds / medians[TV]:.2f}"
        if peers:
            row["x faster peer"] = f"{seconds / min(peers):.2f}"
        if PLAIN in medians and workload in TRAINING:
            row["x plain eager"] = f"{seconds / medians[PLAIN]:.3f}"
        row["img/s"] = f"{SHAPES[workload][0] / seconds:.2f}"
        for label_, values in (("peak", memory), ("saved", saved)):
            if values and name in values:
                row[f"{label_} MiB"] = f"{values[name]:.0f}"
                if TV in values:
                    row[f"{label_} x resnet50"] = f"{values[name] / values[TV]:.2f}"
        rows.append(row)
    return rows


def count_complexity(size: int = 224) -> List[Dict]:
    """Parameters and GMACs (fvcore) of every variant and of the peers, at size x size, with classifier."""
    import timm
    import torchvision
    from fvcore.nn import FlopCountAnalysis

    models = [(name, lambda name=name: rb.create_model(name, num_classes=1000)) for name in rb.list_models()]
    models += [(TIMM, lambda: timm.create_model("resnest50d")), (TV, torchvision.models.resnet50)]
    rows = []
    x = torch.rand(1, 3, size, size)
    for name, build in models:
        model = build().eval()
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs = analysis.total()
        rows.append({"model": name, "params M": sum(p.numel() for p in model.parameters()) / 1e6,
                     "GMACs": macs / 1e9})
    return rows


def variant_latency(rows: List[Dict], device, memory_format, repeats: int):
    """Add batch-1 eager and fast-path latency (ms, median) to each complexity row; all models interleaved."""
    import timm
    import torchvision

    entries = []
    for row in rows:
        name = row["model"]
        if name in rb.list_models():
            eager = rb.create_model(name, num_classes=1000).eval()
            candidates = {"eager": eager, "fast": to_fast_inference(copy.deepcopy(eager))}
        else:
            candidates = {"eager": timm.create_model("resnest50d") if name == TIMM else torchvision.models.resnet50()}
        for key, model in candidates.items():
            model.eval()
            model.to(device=device, memory_format=memory_format)
            entries.append(Entry(f"{name}|{key}", model, None, model))
    medians = time_interleaved(entries, lambda e: inference_call(e, "cls_b1", device, memory_format, False), device,
                               1, repeats)
    for row in rows:
        for key in ("eager", "fast"):
            if f"{row['model']}|{key}" in medians:
                row[f"{key} ms"] = medians[f"{row['model']}|{key}"] * 1000
    return rows


def variant_training_memory(size: int = 256) -> List[Dict]:
    """Saved training activations (MiB, 2 x 3 x size x size, train-mode BN) of every variant, with the training
    formulation and plain eager, and of the peers."""
    rows = []
    x = torch.rand(2, 3, size, size)
    for name in rb.list_models():
        model = rb.create_model(name, memory_efficient=True).train()
        entry = Entry(name, model, lambda x, m=model: list(m.forward_features(x).values()), None)
        row = {"model": name, "saved MiB": saved_for_backward_mib(entry, x)}
        set_memory_efficient(model, False)
        row["plain eager saved MiB"] = saved_for_backward_mib(entry, x)
        rows.append(row)
    peers = build_models([TIMM, MMDET, TV], training=True)
    prepare(peers, "train", torch.device("cpu"), torch.contiguous_format)
    for name, entry in peers.items():
        rows.append({"model": name, "saved MiB": saved_for_backward_mib(entry, x)})
    return rows


def plot_latency(rows: List[Dict], path: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=80)
    for axis, key in zip(axes, ("GMACs", "params M")):
        for row in rows:
            label = row["model"].replace("resnest50_fast_", "fast_")
            if row["model"] in rb.list_models():
                axis.scatter(row[key], row["fast ms"], color="tab:blue", s=22, label="ours, fast path")
                axis.scatter(row[key], row["eager ms"], facecolors="none", edgecolors="tab:blue", s=22,
                             label="ours, eager")
                axis.annotate(label, (row[key], row["fast ms"]), fontsize=6, xytext=(3, -6),
                              textcoords="offset points")
            else:
                color = "tab:red" if row["model"] == TIMM else "tab:gray"
                axis.scatter(row[key], row["eager ms"], color=color, marker="s", s=30, label=row["model"])
        axis.set_xlabel("GMACs (fvcore), 224x224" if key == "GMACs" else "parameters (millions)")
        axis.set_ylabel("latency, batch 1, ms (log)")
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        axis.legend(unique.values(), unique.keys(), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot written to {path}")


def plot_memory(rows: List[Dict], path: str, size: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [row for row in rows if row["model"] in rb.list_models()]
    peers = {row["model"]: row["saved MiB"] for row in rows if row["model"] not in rb.list_models()}
    fig, axis = plt.subplots(figsize=(10, 4.2), dpi=80)
    positions = range(len(variants))
    axis.bar([p - 0.2 for p in positions], [row["plain eager saved MiB"] for row in variants], 0.4,
             color="tab:gray", label="ours, plain eager (as timm/mmdet)")
    axis.bar([p + 0.2 for p in positions], [row["saved MiB"] for row in variants], 0.4, color="tab:blue",
             label="ours, memory_efficient=True")
    styles = {TV: ("black", "-"), TIMM: ("tab:red", "--"), MMDET: ("tab:orange", ":")}
    for name, value in peers.items():
        color, style = styles[name]
        axis.axhline(value, color=color, linestyle=style, linewidth=1, label=f"{name}: {value:.0f} MiB")
    axis.set_xticks(list(positions))
    axis.set_xticklabels([row["model"].replace("resnest50_fast_", "fast_") for row in variants], rotation=30,
                         fontsize=7, ha="right")
    axis.set_ylabel("saved activations + weights, MiB")
    axis.set_yscale("log")
    axis.set_title(f"Training memory autograd keeps, 2x3x{size}x{size}, train-mode BN (exact, load-independent)",
                   fontsize=9)
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot written to {path}")


# ----------------------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 timed rounds after 1 warm-up (default: 5 after 1)")
    parser.add_argument("--repeats", type=int, help="timed rounds per workload")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="also run every workload under torch.autocast (float16 "
                        "on CUDA, bfloat16 on CPU)")
    parser.add_argument("--channels-last", action="store_true", help="also run every workload in channels_last")
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS),
                        help="tables to print (default: all; none with --plot/--memory-plot alone)")
    parser.add_argument("--process-per-model", action="store_true", help="time each model in a process of its own "
                        "(still interleaved round by round), so that no model runs on the heap the others left")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-model peak-memory subprocesses")
    parser.add_argument("--plot", help="params/GMACs table and batch-1 latency of every variant, drawn to this PNG")
    parser.add_argument("--memory-plot", help="saved training activations of every variant, drawn to this PNG")
    parser.add_argument("--memory-efficient", choices=("on", "off"), default="on",
                        help="training formulation of the 'ours memory_efficient' row: on (the default here), off")
    parser.add_argument("--profile", action="store_true", help="also print where the time of each training step "
                        "goes (torch.profiler, self CPU time per op group)")
    parser.add_argument("--_memory-of", dest="memory_of", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.amp and args.device == "cpu":
        print("note: --amp on CPU runs bfloat16 autocast")
    return args


def run_workload(workload: str, label: str, device, memory_format, amp: bool, args, warmup: int, repeats: int,
                 cpu_memory: Optional[Dict[str, Dict]] = None) -> None:
    training = workload in TRAINING
    entries = build_models(training=training, memory_efficient=MEMORY_EFFICIENT[args.memory_efficient])
    prepare(entries, workload, device, memory_format)
    if args.process_per_model:
        workers = {name: ModelProcess(name, workload, device, memory_format, amp,
                                      MEMORY_EFFICIENT[args.memory_efficient], args.threads) for name in entries}
        medians = time_interleaved(list(entries.values()), lambda e: workers[e.name].step, device, warmup, repeats)
        for worker in workers.values():
            worker.close()
    else:
        medians = time_interleaved(list(entries.values()),
                                   lambda e: workload_call(e, workload, device, memory_format, amp),
                                   device, warmup, repeats)
    if training:
        memory = None
        if cpu_memory:  # peak and saved from the memory subprocess
            memory = {name: measured[workload]["peak"] for name, measured in cpu_memory.items()}
            saved = {name: measured[workload]["saved"] for name, measured in cpu_memory.items()}
        else:
            x = _input(workload, device, memory_format)
            saved = {name: saved_for_backward_mib(entry, x, amp) for name, entry in entries.items()}
            if not args.no_memory and device.type == "cuda":
                memory = {name: training_memory_cuda(e, workload, device, memory_format, amp)
                          for name, e in entries.items()}
        rows = ratio_rows(workload, label, medians, memory, saved)
        if args.profile:
            profile = profile_rows(entries, workload, device, memory_format, amp)
            print(f"Where the time goes, {workload} {label} (self CPU time of one step, ms):\n"
                  + format_table(profile, list(profile[0])) + "\n")
    else:
        rows = ratio_rows(workload, label, medians)
    print(format_table(rows, list(rows[0])) + "\n", flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.memory_of:
        print(json.dumps(measure_training_memory_here(args.memory_of, args.workloads, args.channels_last,
                                                      args.threads, MEMORY_EFFICIENT[args.memory_efficient])))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 5)
    warmup = 1
    started = time.time()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", {repeats} timed rounds after {warmup} warm-up, medians", flush=True)
    if args.workloads:
        entries = build_models()
        for entry in entries.values():
            entry.model.eval()  # separate statements: mmdet's train() returns None
            entry.model.to(device)
        print(f"outputs equal before timing (fast path, timm, mmdet vs ours): max relative error "
              f"{check_outputs_equal(entries, device):.1e}\n", flush=True)
        del entries

    settings = [("fp32", torch.contiguous_format, False)]
    if args.channels_last:
        settings.append(("fp32 channels_last", torch.channels_last, False))
    if args.amp:
        settings.append(("AMP" if device.type == "cuda" else "AMP bf16", torch.contiguous_format, True))
    training = [w for w in args.workloads if w in TRAINING]
    for label, memory_format, amp in settings:
        cpu_memory = None
        if training and device.type == "cpu" and not amp and not args.no_memory:
            # One fresh process measures every model's training workloads in this memory format.
            cpu_memory = training_memory_subprocess([OURS, PLAIN, TIMM, MMDET, TV], training,
                                                    memory_format == torch.channels_last, args.threads,
                                                    args.memory_efficient)
        for workload in args.workloads:
            run_workload(workload, label, device, memory_format, amp, args, warmup, repeats, cpu_memory)

    if args.plot:
        complexity = count_complexity()
        variant_latency(complexity, device, torch.contiguous_format, 3 if args.quick else 5)
        printable = [{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in row.items()} for row in complexity]
        print("Parameters and GMACs (fvcore, 224x224, 1000 classes); latency batch 1, fp32, median:\n"
              + format_table(printable, ["model", "params M", "GMACs", "eager ms", "fast ms"]) + "\n")
        plot_latency(complexity, args.plot, f"CPU fp32, batch 1, 224x224, {torch.get_num_threads()} threads "
                                            f"({os.cpu_count()}-core {platform.machine()})")
    if args.memory_plot:
        rows = variant_training_memory()
        printable = [{k: (f"{v:.0f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows]
        print("Saved training activations + weights, MiB, 2x3x256x256, train-mode BN (exact):\n"
              + format_table(printable, ["model", "saved MiB", "plain eager saved MiB"]) + "\n")
        plot_memory(rows, args.memory_plot, 256)
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
