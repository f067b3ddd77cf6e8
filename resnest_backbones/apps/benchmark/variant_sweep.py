"""The variant sweep: parameters and GMACs of every published variant (fvcore), batch-1 latency eager and fused
(interleaved medians), and the saved training activations of every variant, each drawn to a PNG.

Usage:
    python tools/benchmark_variants.py --plot docs/latency_vs_gflops.png --memory-plot docs/training_memory.png
"""
import argparse
import copy
import os
import platform
import warnings
from typing import Dict, List

import torch

import resnest_backbones as rb
from resnest_backbones.fast_inference import to_fast_inference
from resnest_backbones.memory_efficient import set_memory_efficient

from .memory import saved_for_backward_mib
from .models import MMDET, TIMM, TV, Entry, build_models, prepare
from .report import format_table
from .timing import inference_call, time_interleaved


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
    calls = {entry.name: inference_call(entry, "cls_b1", device, memory_format, False) for entry in entries}
    medians = time_interleaved(calls, device, 1, repeats)
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plot", help="params/GMACs table and batch-1 latency of every variant, drawn to this PNG")
    parser.add_argument("--memory-plot", help="saved training activations of every variant, drawn to this PNG")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (CPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of the latency sweep")
    args = parser.parse_args(argv)
    if not (args.plot or args.memory_plot):
        parser.error("give --plot and/or --memory-plot (the PNG files to draw)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.plot:
        complexity = count_complexity()
        variant_latency(complexity, torch.device("cpu"), torch.contiguous_format, args.repeats)
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
