#!/usr/bin/env python
"""Benchmark ResNeSt-50 (ours: eager and fast path) against timm, mmdet and torchvision ResNet-50, in one process.

Every model gets the same inputs, dtype (fp32; AMP rows on CUDA), mode and memory format within a row. Models are
interleaved (one run of each, round after round) and medians are reported, so background load hits all of them
alike. Before any time is reported, the outputs of our eager model, our fast path, timm's and mmdet's (all holding
the same weights) are checked equal.

Workloads:
    cls    8x3x224x224, eval, no_grad; the full classifier where the model has one (mmdet's is a backbone only:
           its row runs the backbone, marked "features").
    det    1x3x800x1216, eval, no_grad; backbone features (all four stages).
    train  2x3x512x512, train mode, forward + backward of the sum of the four stages' means, parameter gradients
           set to None before each step (so allocating them is part of the step).

Peak training memory (CPU): each model runs in its own fresh subprocess with glibc's mmap threshold fixed at 64 KiB
(``MALLOC_MMAP_THRESHOLD_``), so every tensor buffer is mapped on allocation and unmapped on free and the resident set
follows live memory (with the default, freed blocks stay resident and a second step reuses them unseen). After a
first (warm-up) step the kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``), a second step
runs, and "peak MiB" is ``VmHWM - RSS before the step``: what the step itself needed (activations kept for backward,
gradients, workspaces). "saved MiB" is exact and load-independent: the bytes of the distinct tensors autograd saves
for backward during the forward pass (``torch.autograd.graph.saved_tensors_hooks``). On CUDA, "peak MiB" is
``torch.cuda.max_memory_allocated`` over the step minus what was allocated before.

Also prints parameters and GMACs (fvcore's FlopCountAnalysis, which counts one multiply-add as one flop) of every
variant of ``list_models()`` and the peers, and with ``--plot`` draws latency against GMACs and parameters.

Usage:
    python tools/benchmark.py --quick --plot docs/latency_vs_gflops.png
"""
import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import resnest_backbones as rb  # noqa: E402
from resnest_backbones.fast_inference import to_fast_inference  # noqa: E402
from resnest_backbones.keymaps import official_to_openmmlab  # noqa: E402

OURS, FAST, TIMM, MMDET, TV = ("ResNeSt-50 ours eager", "ResNeSt-50 ours fast path", "timm resnest50d",
                               "mmdet ResNeSt-50", "torchvision resnet50")
PEER_RESNESTS = (TIMM, MMDET)
WORKLOADS = {"cls": (8, 224, 224), "det": (1, 800, 1216), "train": (2, 512, 512)}
SHAPES = dict(WORKLOADS, cls_b1=(1, 224, 224))  # cls_b1: batch-1 latency of the variant sweep


# ----------------------------------------------------------------------------------------------------------- models
def _features_torchvision(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outputs = []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
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


def build_models(skip_mmdet: bool = False) -> Dict[str, Entry]:
    """Our ResNeSt-50 (eager, fused), timm resnest50d, mmdet ResNeSt-50 and torchvision resnet50, same weights for
    the four ResNeSts (timm's random init copied into ours, mmdet's loaded through the OpenMMLab key layout)."""
    import timm
    import torchvision

    timm_model = timm.create_model("resnest50d", num_classes=1000)
    ours = rb.create_model("resnest50", num_classes=1000)
    rb.load_pretrained(ours, timm_model.state_dict())
    fast = to_fast_inference(copy.deepcopy(ours).eval())
    tv = torchvision.models.resnet50()

    def timm_features(x):
        m = timm_model
        x = m.maxpool(m.act1(m.bn1(m.conv1(x))))
        outputs = []
        for stage in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = stage(x)
            outputs.append(x)
        return outputs

    entries = {
        OURS: Entry(OURS, ours, lambda x: list(ours.forward_features(x).values()), ours),
        FAST: Entry(FAST, fast, lambda x: list(fast.forward_features(x).values()), fast),
        TIMM: Entry(TIMM, timm_model, timm_features, timm_model),
    }
    if not skip_mmdet:
        from mmdet.models.backbones import ResNeSt as MMDetResNeSt

        # norm_eval=False: mmdet's default keeps BN in eval mode during training, which would not be the same work.
        mmdet = MMDetResNeSt(depth=50, stem_channels=64, norm_eval=False, frozen_stages=-1)
        backbone_state = {k: v for k, v in ours.state_dict().items() if not k.startswith("fc.")}
        mmdet.load_state_dict(official_to_openmmlab(backbone_state), strict=False)
        missing = set(mmdet.state_dict()) - set(official_to_openmmlab(backbone_state))
        if missing:
            raise RuntimeError(f"mmdet ResNeSt keys not loaded: {sorted(missing)[:5]}")
        entries[MMDET] = Entry(MMDET, mmdet, lambda x: list(mmdet(x)), None)
    entries[TV] = Entry(TV, tv, lambda x: _features_torchvision(tv, x), tv)
    return entries


def check_outputs_equal(entries: Dict[str, Entry], device: torch.device) -> float:
    """Raise unless fast path, eager, timm (and mmdet) agree on features and logits; return the worst error."""
    x = torch.rand(2, 3, 224, 224, device=device)
    with torch.no_grad():
        reference = entries[OURS].features(x) + [entries[OURS].classify(x)]
        worst = 0.0
        for name in (FAST, TIMM, MMDET):
            if name not in entries:
                continue
            entry = entries[name]
            outputs = entry.features(x) + ([entry.classify(x)] if entry.classify is not None else [])
            for out, ref in zip(outputs, reference):
                error = ((out - ref).abs().max() / ref.abs().max()).item()
                worst = max(worst, error)
                if not error <= 1e-4:
                    raise SystemExit(f"{name} differs from {OURS}: relative error {error:.2e}; no timing reported")
    return worst


# ----------------------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(entry: Entry, x: torch.Tensor):
    entry.model.zero_grad(set_to_none=True)
    loss = sum(f.float().mean() for f in entry.features(x))
    loss.backward()


def time_interleaved(entries: List[Entry], make_call: Callable[[Entry], Callable[[], None]], device, warmup: int,
                     repeats: int) -> Dict[str, float]:
    """Median seconds per call; models run one after another in each round so load changes hit all of them."""
    calls = {entry.name: make_call(entry) for entry in entries}
    for _ in range(warmup):
        for call in calls.values():
            call()
    _sync(device)
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            _sync(device)
            start = time.perf_counter()
            call()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def inference_call(entry: Entry, workload: str, device, memory_format, amp: bool):
    x = torch.rand(*_shape(workload), device=device).contiguous(memory_format=memory_format)

    def call():
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            entry.inference(x, workload)
    return call


def training_call(entry: Entry, device, memory_format, amp: bool):
    x = torch.rand(*_shape("train"), device=device).contiguous(memory_format=memory_format)

    def call():
        with torch.autocast(device.type, enabled=amp):
            train_step(entry, x)
    return call


def _shape(workload: str):
    batch, height, width = SHAPES[workload]
    return batch, 3, height, width


# ----------------------------------------------------------------------------------------------------------- memory
def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def saved_for_backward_mib(entry: Entry, x: torch.Tensor) -> float:
    """MiB of the distinct tensors (storages) autograd saves for backward in one forward pass of ``entry``."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        entry.features(x)
    return sum(storages.values()) / 2 ** 20


def measure_training_memory_here(name: str, channels_last: bool, threads: int) -> float:
    """In this (fresh) process: MiB the second training step of ``name`` needs above the RSS before it."""
    torch.set_num_threads(threads)
    entry = build_models(skip_mmdet=name != MMDET)[name]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    entry.model.train()
    entry.model.to(memory_format=memory_format)
    x = torch.rand(*_shape("train")).contiguous(memory_format=memory_format)
    train_step(entry, x)
    entry.model.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current RSS
    before = _rss_kib("VmRSS")
    train_step(entry, x)
    return (_rss_kib("VmHWM") - before) / 1024


def training_memory_subprocess(name: str, channels_last: bool, threads: int) -> float:
    command = [sys.executable, os.path.abspath(__file__), "--_memory-of", name, "--threads", str(threads)]
    if channels_last:
        command.append("--channels-last")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return float(result.stdout.strip().splitlines()[-1])


def training_memory_cuda(entry: Entry, device, memory_format, amp: bool) -> float:
    x = torch.rand(*_shape("train"), device=device).contiguous(memory_format=memory_format)
    training_call(entry, device, memory_format, amp)()
    entry.model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast(device.type, enabled=amp):
        train_step(entry, x)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2 ** 20


# ----------------------------------------------------------------------------------------------------------- report
def format_table(rows: List[Dict], columns: List[str]) -> str:
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[i]) for cell in cells)) for i, column in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(cell, widths)) + " |" for cell in cells]
    return "\n".join(lines)


def ratio_rows(workload: str, label: str, medians: Dict[str, float], batch: int, memory: Dict[str, float] = None,
               saved: Dict[str, float] = None):
    fastest_peer = min(medians[name] for name in PEER_RESNESTS if name in medians)
    rows = []
    for name, seconds in medians.items():
        row = {"workload": workload, "setting": label, "model": name, "median ms": f"{seconds * 1000:.1f}",
               "x resnet50": f"{seconds / medians[TV]:.2f}", "x fastest peer ResNeSt": f"{seconds / fastest_peer:.2f}",
               "img/s": f"{batch / seconds:.1f}"}
        if memory and name in memory:
            row["peak MiB"] = f"{memory[name]:.0f}"
            row["mem x resnet50"] = f"{memory[name] / memory[TV]:.2f}"
        if saved and name in saved:
            row["saved MiB"] = f"{saved[name]:.0f}"
            row["saved x resnet50"] = f"{saved[name] / saved[TV]:.2f}"
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


def variant_latency(rows: List[Dict], device, memory_format, repeats: int, size: int = 224):
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


def plot(rows: List[Dict], path: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=80)
    for axis, key in zip(axes, ("GMACs", "params M")):
        for row in rows:
            ours = row["model"] in rb.list_models()
            label = row["model"].replace("resnest50_fast_", "fast_")
            if ours:
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


# ----------------------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a few minutes on 2 CPU cores)")
    parser.add_argument("--repeats", type=int, help="timed rounds per workload (default 5, --quick 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true", help="also run every workload in channels_last")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--no-memory", action="store_true", help="skip the per-model training-memory subprocesses")
    parser.add_argument("--no-variants", action="store_true", help="skip the params/GMACs table and the plot")
    parser.add_argument("--plot", help="write latency vs GMACs/params of every variant and the peers to this PNG")
    parser.add_argument("--_memory-of", dest="memory_of", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.memory_of:
        print(measure_training_memory_here(args.memory_of, args.channels_last, args.threads))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 5)
    warmup = 1 if args.quick else 2
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", {repeats} timed rounds after {warmup} warm-up, medians")
    entries = build_models()
    for entry in entries.values():
        entry.model.eval()  # separate statements: mmdet's train() returns None
        entry.model.to(device)
    print(f"outputs equal before timing (fast path, timm, mmdet vs ours eager): max relative error "
          f"{check_outputs_equal(entries, device):.1e}")

    settings = [("fp32", torch.contiguous_format, False)]
    if args.channels_last:
        settings.append(("fp32 channels_last", torch.channels_last, False))
    if device.type == "cuda":
        settings.append(("AMP", torch.contiguous_format, True))
    rows = []
    for label, memory_format, amp in settings:
        for entry in entries.values():
            entry.model.to(memory_format=memory_format)
        for workload in args.workloads:
            batch = WORKLOADS[workload][0]
            if workload == "train":
                trainable = [e for e in entries.values() if e.name != FAST]  # the fast path is inference-only
                for entry in trainable:
                    entry.model.train()
                medians = time_interleaved(trainable, lambda e: training_call(e, device, memory_format, amp),
                                           device, warmup, repeats)
                memory = None
                x = torch.rand(*_shape("train"), device=device).contiguous(memory_format=memory_format)
                saved = {e.name: saved_for_backward_mib(e, x) for e in trainable}
                if not args.no_memory:
                    if device.type == "cuda":
                        memory = {e.name: training_memory_cuda(e, device, memory_format, amp) for e in trainable}
                    else:
                        memory = {e.name: training_memory_subprocess(e.name, memory_format == torch.channels_last,
                                                                     args.threads) for e in trainable}
                for entry in trainable:
                    entry.model.eval()
            else:
                medians = time_interleaved(list(entries.values()),
                                           lambda e: inference_call(e, workload, device, memory_format, amp),
                                           device, warmup, repeats)
                memory = saved = None
            rows += ratio_rows(workload + ("" if workload != "cls" else " (mmdet: features)"), label, medians,
                               batch, memory, saved)
            print(format_table(rows[-len(medians):], list(rows[-1])), flush=True)
    columns = ["workload", "setting", "model", "median ms", "x resnet50", "x fastest peer ResNeSt", "img/s",
               "peak MiB", "mem x resnet50", "saved MiB", "saved x resnet50"]
    print("\nAll workloads:\n" + format_table(rows, columns))

    if not args.no_variants:
        complexity = count_complexity()
        if args.plot:
            variant_latency(complexity, device, torch.contiguous_format, 3 if args.quick else 5)
        columns = ["model", "params M", "GMACs"] + (["eager ms", "fast ms"] if args.plot else [])
        printable = [{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in row.items()} for row in complexity]
        print("\nParameters and GMACs (fvcore, 224x224, 1000 classes)"
              + ("; latency batch 1, fp32, median" if args.plot else "") + ":\n" + format_table(printable, columns))
        if args.plot:
            plot(complexity, args.plot, f"CPU fp32, batch 1, 224x224, {torch.get_num_threads()} threads "
                                        f"({os.cpu_count()}-core {platform.machine()})")


if __name__ == "__main__":
    main()
