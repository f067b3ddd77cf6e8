"""Multi-process detectron2 runs on machines without CUDA (``tools/train_net.py --num-gpus N`` on CPUs, gloo).

With CUDA every function here hands over to detectron2 unchanged (its ``launch``, its ``create_ddp_model``). Without
CUDA, detectron2 itself falls short in two places, and this module fills exactly those:

- ``launch``: detectron2 v0.6 (the offline fallback) asserts CUDA in its worker. Newer detectron2 (since January
  2023, recognisable by ``comm.create_local_process_group``) starts CPU workers with gloo itself, and is used as is.
  For v0.6 the worker here does what newer detectron2's does: gloo process group, detectron2's ``comm`` local process
  group, a barrier, then ``main_func``.
- ``create_ddp_model``: every detectron2 passes ``device_ids=[local_rank]`` to ``DistributedDataParallel``, which a
  CPU module rejects. For a model on the CPU this calls detectron2's own function with ``device_ids=None``.

``check_sync_bn_on_cpu`` refuses ``SyncBN`` in multi-process CPU runs (torch's ``SyncBatchNorm`` has no CPU
implementation) with a message naming every key and the CPU choice ``naiveSyncBN``; nothing is switched silently.
"""
import functools
import logging
import os
import sys
from datetime import timedelta
from typing import Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.engine.defaults import create_ddp_model as detectron2_create_ddp_model
from detectron2.utils import comm
from torch import nn

from ..cli import add_debug_option, call_reporting_errors
from ..detectron2.backbone import sync_bn_keys

logger = logging.getLogger("detectron2.resnest_backbones")
DEFAULT_TIMEOUT = timedelta(minutes=30)  # detectron2's default worker timeout


def detectron2_launches_cpu_workers() -> bool:
    """Whether the installed detectron2's ``launch`` starts gloo workers without CUDA (detectron2 after v0.6)."""
    return hasattr(comm, "create_local_process_group")


def launch(main_func: Callable, num_gpus_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = None, args: Sequence = (), timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """detectron2's ``launch`` (same arguments), plus CPU workers where the installed detectron2 has none.

    Args:
        main_func: called as ``main_func(*args)`` in every process.
        num_gpus_per_machine: processes per machine (``--num-gpus``); on a CPU machine, CPU worker processes.
        num_machines, machine_rank: as detectron2's ``launch``.
        dist_url: rendezvous URL, e.g. ``tcp://127.0.0.1:50152``, or ``auto`` (a free local port).
        args: arguments of ``main_func``.
        timeout: timeout of the collective operations.
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1 or torch.cuda.is_available() or detectron2_launches_cpu_workers():
        return detectron2_launch(main_func, num_gpus_per_machine, num_machines=num_machines,
                                 machine_rank=machine_rank, dist_url=dist_url, args=args, timeout=timeout)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; give every machine the same tcp:// URL")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.start_processes(_cpu_worker, nprocs=num_gpus_per_machine, daemon=False,
                       args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args),
                             timeout))


def tool_parser():
    """detectron2's ``default_argument_parser`` plus ``--allow-partial-weights`` and ``--debug``."""
    from detectron2.engine import default_argument_parser
    parser = default_argument_parser()
    parser.add_argument("--allow-partial-weights", action="store_true",
                        help="with --eval-only: evaluate even when the weights leave parts of the detector at their "
                             "initialisation (or there are no weights); refused by default")
    return add_debug_option(parser)


def launch_tool(main_func: Callable, argv: Optional[Sequence[str]] = None) -> int:
    """The ``__main__`` of ``tools/train_net.py`` and ``tools/lazyconfig_train_net.py``: ``tool_parser()``, then
    ``launch(main_func, --num-gpus, ...)`` with the parsed arguments. Returns the exit status: a user error is one
    message on stderr (from the process that hit it) and status 1; ``--debug`` shows the traceback instead."""
    parser = tool_parser()
    args = parser.parse_args(argv)
    print("Command Line Args:", args)
    worker = functools.partial(call_exiting_on_error, main_func, parser.prog)
    try:
        launch(worker, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except mp.ProcessExitedException as error:  # a worker reported its error and exited with status 1
        if args.debug or error.exit_code != 1:
            raise
        return 1
    except SystemExit as error:  # one process: the error was reported in it
        return error.code if isinstance(error.code, int) else 1
    return 0


def call_exiting_on_error(main_func: Callable, prog: str, args) -> None:
    """``main_func(args)`` in one process of a tool run; an error is reported as one message and the process
    exits with status 1 (``--debug``: raised with its traceback)."""
    def run(parsed) -> int:
        main_func(parsed)  # returns metrics, not an exit status
        return 0

    if call_reporting_errors(run, args, prog):
        sys.exit(1)


def _free_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _cpu_worker(local_rank: int, main_func: Callable, world_size: int, num_per_machine: int, machine_rank: int,
                dist_url: str, args: tuple, timeout: timedelta) -> None:
    """One CPU process of ``launch``: what newer detectron2's worker does without CUDA."""
    dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size,
                            rank=machine_rank * num_per_machine + local_rank, timeout=timeout)
    try:
        # comm.get_local_rank()/get_local_size() read comm._LOCAL_PROCESS_GROUP. Every rank must create every group.
        for machine in range(world_size // num_per_machine):
            group = dist.new_group(list(range(machine * num_per_machine, (machine + 1) * num_per_machine)))
            if machine == machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
        comm.synchronize()
        main_func(*args)
    finally:
        # Tear the gloo group down before the interpreter exits: otherwise one rank can exit while the other still
        # flushes, and gloo aborts the late one.
        dist.destroy_process_group()


def local_main_first(func: Callable):
    """``func()`` in the first process of each machine, then (after a barrier) in the others: for work on shared
    files, such as making a dataset, that one process must finish before the others read it."""
    if comm.get_world_size() <= 1:
        return func()
    if comm.get_local_rank() == 0:
        try:
            return func()
        finally:
            comm.synchronize()  # also after a failure: the others must not wait for ever
    comm.synchronize()
    return func()


def is_cpu_distributed(device: str) -> bool:
    """Whether this process is one of several and computes on the CPU (``device``: e.g. ``cfg.MODEL.DEVICE``)."""
    return comm.get_world_size() > 1 and torch.device(device).type == "cpu"


def create_ddp_model(model: nn.Module, **kwargs) -> nn.Module:
    """detectron2's ``create_ddp_model`` (same arguments), without ``device_ids`` for a model on the CPU."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    if on_cpu and comm.get_world_size() > 1:
        if kwargs.get("device_ids"):
            raise ValueError(f"DistributedDataParallel of a CPU model takes no device_ids, got {kwargs['device_ids']}")
        kwargs["device_ids"] = None
    return detectron2_create_ddp_model(model, **kwargs)


def set_cpu_threads(device: str) -> Optional[int]:
    """In a multi-process CPU run (``device``: the model's), share the cores between the local processes (each would
    otherwise start one thread per core) unless ``OMP_NUM_THREADS`` says otherwise. Returns the thread count set, or
    None (GPU runs are left to detectron2)."""
    if not is_cpu_distributed(device) or "OMP_NUM_THREADS" in os.environ:
        return None
    threads = max(1, (os.cpu_count() or 1) // comm.get_local_size())
    torch.set_num_threads(threads)
    return threads


def lazy_sync_bn_keys(node, prefix: str = "model") -> List[str]:
    """Dotted paths of every ``"SyncBN"`` value inside a LazyConfig node (e.g. ``model.backbone.norm``)."""
    if isinstance(node, str):
        return [prefix] if node == "SyncBN" else []
    if hasattr(node, "items"):
        return [key for name, child in node.items() for key in lazy_sync_bn_keys(child, f"{prefix}.{name}")]
    if isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig":
        return [key for index, child in enumerate(node) for key in lazy_sync_bn_keys(child, f"{prefix}.{index}")]
    return []


def refuse_sync_bn_on_cpu(keys: Sequence[str], device: str, separator: str = " ") -> None:
    """Raise when a multi-process CPU run would build ``torch.nn.SyncBatchNorm`` from ``keys`` (it raises on CPU
    tensors deep inside the first forward); the message names every key and the CPU choice ``naiveSyncBN``, written
    as command-line overrides (``KEY naiveSyncBN`` for yacs, ``key=naiveSyncBN`` for LazyConfig: ``separator``)."""
    if not keys or not is_cpu_distributed(device):
        return
    overrides = " ".join(f"{key}{separator}naiveSyncBN" for key in keys)
    raise ValueError(
        f"{', '.join(keys)} {'is' if len(keys) == 1 else 'are'} SyncBN, which torch implements for CUDA only; "
        f"this run has {comm.get_world_size()} CPU processes. On CPUs use detectron2's naiveSyncBN (the same "
        f"statistics across processes, through all-reduce): append `{overrides}` to the command. "
        "Nothing was switched automatically.")


def check_sync_bn_on_cpu(cfg) -> None:
    """``refuse_sync_bn_on_cpu`` for a yacs config (its norm keys: ``detectron2.backbone.NORM_KEYS``)."""
    refuse_sync_bn_on_cpu(sync_bn_keys(cfg), cfg.MODEL.DEVICE)


def refuse_one_image_per_process(images: int, world_size: int, norm, batch_key: str, norm_key: str,
                                 scale_hint: str) -> None:
    """Refuse a training whose processes see one image each when the ResNeSt backbone normalises with batch
    statistics of that process alone: split attention normalises a 1x1 attention map, so BatchNorm would get one
    value per channel and fail in the first step."""
    per_process = images // world_size
    synced = world_size > 1 and norm in ("SyncBN", "naiveSyncBN", "nnSyncBN")  # statistics over every process
    if per_process < 2 and norm in ("BN", "SyncBN", "naiveSyncBN", "nnSyncBN") and not synced:
        raise ValueError(
            f"{batch_key} {images} over {world_size} process(es) gives {per_process} image per process, but "
            f"{norm_key} {norm!r} in ResNeSt's split attention needs at least 2 while training. Set {batch_key} to "
            f"{2 * world_size} or more{scale_hint}, or {norm_key} to naiveSyncBN (statistics over all processes).")
