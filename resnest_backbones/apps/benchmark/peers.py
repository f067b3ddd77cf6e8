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
"peak MiB" (CPU): the models one after another in one fresh subprocess (``memory.py``) with glibc's mmap threshold fixed at 64 KiB
(``MALLOC_MMAP_THRESHOLD_``), so that every tensor buffer is mapped on allocation and unmapped on free and the
resident set follows live memory; after a warm-up step at 2x3x256x256 the kernel's high-water mark is reset
(``/proc/self/clear_refs``), a step at the workload's shape runs, and the number is ``VmHWM`` minus the RSS before
that step: what the step itself needed (saved activations, gradients, workspaces). The saved bytes are counted in
the same step. On CUDA: ``torch.cuda.max_memory_allocated`` over the step minus
what was allocated before.

Sibling tools: ``tools/benchmark_variants.py`` (every variant's GMACs, latency and training memory, drawn),
``tools/benchmark_compile.py`` (the ``torch.compile``d training step), ``tools/benchmark_deploy.py`` (whole detectors
and segmentors in PyTorch, fused, ONNX Runtime and OpenVINO).

Usage:
    python tools/benchmark.py --workloads train train_det --threads 2        # the training tables
    python tools/benchmark.py --workloads cls det --channels-last --threads 2  # the inference tables
    python tools/benchmark.py --device cuda --amp                             # on a GPU, with autocast rows
"""
import argparse
import os
import platform
import time
from typing import Dict, Optional

import torch

from .memory import saved_for_backward_mib, training_memory_cuda, training_memory_subprocess
from .models import FAST, MEMORY_EFFICIENT, MMDET, OURS, PLAIN, TIMM, TRAINING, TV, WORKLOADS, build_models, \
    check_outputs_equal, prepare
from .op_profile import profile_rows
from .report import format_table, ratio_rows
from .timing import ModelProcess, make_input, time_interleaved, workload_call


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
                        help="tables to print (default: all)")
    parser.add_argument("--process-per-model", action="store_true", help="time each model in a process of its own "
                        "(still interleaved round by round), so that no model runs on the heap the others left")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-model peak-memory subprocesses")
    parser.add_argument("--memory-efficient", choices=("on", "off"), default="on",
                        help="training formulation of the 'ours memory_efficient' row: on (the default here), off")
    parser.add_argument("--profile", action="store_true", help="also print where the time of each training step "
                        "goes (torch.profiler, self CPU time per op group)")
    args = parser.parse_args(argv)
    if args.amp and args.device == "cpu":
        print("note: --amp on CPU runs bfloat16 autocast")
    return args


def run_workload(workload: str, label: str, device, memory_format, amp: bool, args, warmup: int, repeats: int,
                 cpu_memory: Optional[Dict[str, Dict]] = None) -> None:
    """Time every model on ``workload`` and print its table (with memory and, on request, the op profile)."""
    training = workload in TRAINING
    memory_efficient = MEMORY_EFFICIENT[args.memory_efficient]
    entries = None
    if args.process_per_model:  # the models are built in their own processes only
        names = [OURS, PLAIN, TIMM, MMDET, TV] if training else [PLAIN, FAST, TIMM, MMDET, TV]
        workers = {name: ModelProcess(name, workload, device, memory_format, amp, memory_efficient, args.threads)
                   for name in names}
        medians = time_interleaved({name: worker.step for name, worker in workers.items()}, device, warmup, repeats)
        for worker in workers.values():
            worker.close()
    else:
        entries = build_models(training=training, memory_efficient=memory_efficient)
        prepare(entries, workload, device, memory_format)
        medians = time_interleaved({name: workload_call(entry, workload, device, memory_format, amp)
                                    for name, entry in entries.items()}, device, warmup, repeats)
    if not training:
        rows = ratio_rows(workload, label, medians)
        print(format_table(rows, list(rows[0])) + "\n", flush=True)
        return
    if entries is None and (not cpu_memory or args.profile):
        entries = build_models(training=True, memory_efficient=memory_efficient)
        prepare(entries, workload, device, memory_format)
    memory = saved = None
    if cpu_memory:  # peak and saved from the memory subprocess
        memory = {name: measured[workload]["peak"] for name, measured in cpu_memory.items()}
        saved = {name: measured[workload]["saved"] for name, measured in cpu_memory.items()}
    else:
        x = make_input(workload, device, memory_format)
        saved = {name: saved_for_backward_mib(entry, x, amp) for name, entry in entries.items()}
        if not args.no_memory and device.type == "cuda":
            memory = {name: training_memory_cuda(e, workload, device, memory_format, amp) for name, e in entries.items()}
    rows = ratio_rows(workload, label, medians, memory, saved)
    print(format_table(rows, list(rows[0])) + "\n", flush=True)
    if args.profile:
        profile = profile_rows(entries, workload, device, memory_format, amp)
        print(f"Where the time goes, {workload} {label} (self CPU time of one step, ms):\n"
              + format_table(profile, list(profile[0])) + "\n")


def main(argv=None):
    args = parse_args(argv)
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

    print(f"total {time.time() - started:.0f} s")
