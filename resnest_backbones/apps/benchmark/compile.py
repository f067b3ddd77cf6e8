"""The ``torch.compile``d training step of our ResNeSt-50 against compiled torchvision ResNet-50 and compiled timm
``resnest50d`` (inductor, CPU fp32 unless ``--device cuda``), and whether our model compiles into one graph.

Each model's feature function (stem and four stages, train-mode BN) is compiled with ``torch.compile``; a step is
forward, the sum of the four stages' means, backward. Reported: compile time (the first step), the median step time
over interleaved rounds, the ratios to ResNet-50 and timm, the bytes the compiled graph saves for backward, and
``torch._dynamo.explain``'s graph and graph-break counts for our model.

Under ``torch.compile`` the memory-efficient formulation steps aside (``resnest_backbones.memory_efficient.applies``
is False while compiling): inductor's partitioner decides itself which activations to keep and which cheap
element-wise ops to recompute in backward, so the hand-written autograd Function is neither needed nor traced.

Compiling three training graphs takes minutes on 2 CPU cores (this is why it is its own command).

Usage:
    python tools/benchmark_compile.py --threads 2
"""
import argparse
import os
import time
from typing import Callable, Dict

import torch

from .memory import saved_for_backward_mib
from .models import OURS, TIMM, TV, Entry, build_models, prepare
from .report import format_table
from .timing import synchronize, time_interleaved


def step(model: torch.nn.Module, function: Callable, x: torch.Tensor) -> None:
    """One training step through ``function`` (the compiled feature function of ``model``)."""
    model.zero_grad(set_to_none=True)
    sum(f.mean() for f in function(x)).backward()
    synchronize(x.device)


def explain(entry: Entry, x: torch.Tensor) -> str:
    """``torch._dynamo.explain``'s graph and graph-break counts for ``entry``'s feature function."""
    explanation = torch._dynamo.explain(entry.features)(x)
    torch._dynamo.reset()
    return (f"{entry.name}: torch._dynamo.explain: {explanation.graph_count} graph(s), "
            f"{explanation.graph_break_count} graph break(s)"
            + "".join(f"\n  break: {reason.reason}" for reason in explanation.break_reasons))


def compile_all(entries: Dict[str, Entry], x: torch.Tensor) -> Dict[str, tuple]:
    """``{name: (compiled feature function, seconds of the first step: compiling forward and backward)}``."""
    compiled = {}
    for name, entry in entries.items():
        function = torch.compile(entry.features)
        start = time.perf_counter()
        step(entry.model, function, x)
        compiled[name] = (function, time.perf_counter() - start)
        print(f"compiled {name} in {compiled[name][1]:.0f} s", flush=True)
    return compiled


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="square input size (default 512, as the train table)")
    parser.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds after one warm-up")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"input {args.batch}x3x{args.size}x{args.size}, train-mode BN, {args.repeats} rounds, medians", flush=True)
    entries = build_models([OURS, TIMM, TV], training=True)
    prepare(entries, "train", device, torch.contiguous_format)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    print(explain(entries[OURS], x), flush=True)
    compiled = compile_all(entries, x)
    medians = time_interleaved({name: (lambda e=entry, f=compiled[name][0]: step(e.model, f, x))
                                for name, entry in entries.items()}, device, 0, args.repeats)
    rows = []
    for name, entry in entries.items():
        saved = saved_for_backward_mib(Entry(name, entry.model, compiled[name][0], None), x)
        rows.append({"model (compiled)": name, "compile s": f"{compiled[name][1]:.0f}",
                     "median ms": f"{medians[name] * 1000:.1f}", "x resnet50": f"{medians[name] / medians[TV]:.2f}",
                     "x timm": f"{medians[name] / medians[TIMM]:.2f}", "saved MiB": f"{saved:.0f}"})
    print(format_table(rows, list(rows[0])))
