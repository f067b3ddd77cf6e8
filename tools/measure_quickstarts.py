#!/usr/bin/env python
"""Run every quick start with several seeds, one run at a time, and print each run's metrics, seconds per iteration,
iterations and wall time, then one table per quick start (mean +- sample std, min-max): the figures the README
quotes. Meant for a quiet machine (nothing else running); not part of the test suite.

    python tools/measure_quickstarts.py                      # 4 quick starts x seeds 0-4, about 1.5 h on 2 cores
    python tools/measure_quickstarts.py --only mmseg-ade20k --seeds 0 1 2
    python tools/measure_quickstarts.py --smoke              # 10 iterations each, seed 0: checks the script

Run from the repository root. The synthetic datasets are made first (timed apart) so that every run starts from the
same files; each run is then the user's command (tools/train_net.py, mim train) with only the seed added
(detectron2's SEED, mmengine's randomness.seed; the configs' own seed is 0) and its own output folder under
--out-dir. Seconds per iteration: detectron2's "Overall training speed" (its first iterations left out), mmengine's
logged iteration times (mean); minutes: the whole command.
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout, any cwd

D2_CONFIG = "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml"
MMDET_CONFIG = "configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py"
ADE_CONFIG = "configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py"
CITYSCAPES_CONFIG = "configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py"
SMOKE_ITERATIONS = 10
SEEDS = [0, 1, 2, 3, 4]
DIGITS = {"iterations": 0, "s/iteration": 3}  # decimals shown (others: 2)


def prepare_data() -> None:
    """The datasets the quick starts read, with the commands (and arguments) the README gives."""
    from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
    from resnest_backbones.apps.detectron2_train import load_training_config
    register_synthetic_datasets(load_training_config(os.path.join(ROOT, D2_CONFIG)))  # made on first use
    _run([sys.executable, "tools/make_synthetic_dataset.py", "data/synthetic_shapes", "--num-train", "200",
          "--num-val", "200", "--image-size", "128"])  # reused when already made with these arguments
    _run([sys.executable, "tools/make_synthetic_segmentation.py"])


def detectron2_run(seed: int, out: str, smoke: bool) -> List[str]:
    short = ["SOLVER.MAX_ITER", str(SMOKE_ITERATIONS)] if smoke else []
    return [sys.executable, "tools/train_net.py", "--config-file", D2_CONFIG, "SEED", str(seed), "OUTPUT_DIR", out,
            *short]


def detectron2_metrics(out: str) -> Dict[str, float]:
    with open(os.path.join(out, "eval_results.json")) as f:
        results = json.load(f)
    speed = re.findall(r"Overall training speed: \d+ iterations in \S+ \(([\d.]+) s / it\)", _read(out + ".log"))
    with open(os.path.join(out, "metrics.json")) as f:  # a row per logged iteration (0-based), and the evaluation's
        iterations = max(row["iteration"] for row in map(json.loads, filter(str.strip, f)) if "total_loss" in row) + 1
    return {"box AP": results["bbox"]["AP"], "mask AP": results["segm"]["AP"], "s/iteration": float(speed[-1]),
            "iterations": iterations}


def mim_run(framework: str, config: str) -> Callable[[int, str, bool], List[str]]:
    def command(seed: int, out: str, smoke: bool) -> List[str]:
        options = [f"randomness.seed={seed}"]
        if smoke:
            options += [f"train_cfg.max_iters={SMOKE_ITERATIONS}", f"train_cfg.val_interval={SMOKE_ITERATIONS}"]
        return [sys.executable, "-m", "mim", "train", framework, config, "--work-dir", out, "--cfg-options", *options]
    return command


def mim_metrics(names: Dict[str, str], percent: bool) -> Callable[[str], Dict[str, float]]:
    """The last validation row mmengine logged (``<work_dir>/<time>/vis_data/scalars.json``), the mean logged
    iteration time and the last iteration."""
    def read(out: str) -> Dict[str, float]:
        rows = []
        for path in sorted(glob.glob(os.path.join(out, "*", "vis_data", "scalars.json"))):
            with open(path) as f:
                rows += [json.loads(line) for line in f]
        last = [row for row in rows if all(key in row for key in names.values())][-1]
        training = [row for row in rows if "loss" in row and "time" in row]
        metrics = {label: last[key] * (100 if percent else 1) for label, key in names.items()}
        return dict(metrics, **{"s/iteration": statistics.mean(row["time"] for row in training),
                                "iterations": max(row["iter"] for row in training)})
    return read


QUICK_STARTS = {
    "detectron2": (detectron2_run, detectron2_metrics),
    "mmdet": (mim_run("mmdet", MMDET_CONFIG),
              mim_metrics({"bbox mAP": "coco/bbox_mAP", "segm mAP": "coco/segm_mAP"}, percent=True)),
    "mmseg-ade20k": (mim_run("mmseg", ADE_CONFIG), mim_metrics({"mIoU": "mIoU"}, percent=False)),
    "mmseg-cityscapes": (mim_run("mmseg", CITYSCAPES_CONFIG), mim_metrics({"mIoU": "mIoU"}, percent=False)),
}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _run(command: List[str], log: str = None) -> float:
    """Run ``command`` at the repository root (output to ``log`` if given); return its wall time in seconds."""
    start = time.perf_counter()
    with open(log, "w") if log else open(os.devnull, "w") as out:
        process = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}" + (f"\nsee {log}" if log else ""))
    return time.perf_counter() - start


def spread(values: List[float]) -> Tuple[float, float, float, float]:
    """(mean, sample standard deviation (0 for one value), min, max)."""
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, min(values),
            max(values))


def table(name: str, seeds: List[int], runs: List[Dict[str, float]]) -> str:
    """A Markdown table: one row per measured quantity, each seed's value and mean +- sample std (min-max)."""
    lines = [f"{name}, seeds {' / '.join(map(str, seeds))}:", "",
             "| quantity | per seed | mean +- sample std | min-max |", "|---|---|---|---|"]
    for key in runs[0]:
        mean, std, low, high = (_shown(key, value) for value in spread([run[key] for run in runs]))
        lines.append(f"| {key} | {' / '.join(_shown(key, run[key]) for run in runs)} | **{mean} +- {std}** | "
                     f"{low}-{high} |")
    return "\n".join(lines)


def _shown(key: str, value: float) -> str:
    return f"{value:.{DIGITS.get(key, 2)}f}"


def measure(name: str, seeds: List[int], out_dir: str, smoke: bool) -> List[Dict[str, float]]:
    """Run quick start ``name`` once per seed; print each run as it finishes."""
    command, read_metrics = QUICK_STARTS[name]
    runs = []
    for seed in seeds:
        out = os.path.join(out_dir, f"{name}_seed{seed}")
        seconds = _run(command(seed, out, smoke), log=out + ".log")
        runs.append(dict(read_metrics(out), minutes=seconds / 60))
        print(f"{name} seed {seed}: " + ", ".join(f"{k} {_shown(k, v)}" for k, v in runs[-1].items()), flush=True)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", help=f"default {SEEDS} ([0] with --smoke)")
    parser.add_argument("--only", nargs="+", choices=list(QUICK_STARTS), default=list(QUICK_STARTS))
    parser.add_argument("--out-dir", default="work_dirs/measure_quickstarts", help="one folder per run (and log)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_ITERATIONS} iterations per run: checks that the script works, measures nothing")
    args = parser.parse_args()
    seeds = args.seeds or ([0] if args.smoke else SEEDS)
    os.chdir(ROOT)  # the quick starts' data roots are relative to the repository root
    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)

    print(f"making the datasets: {_time(prepare_data):.0f} s (not counted below)", flush=True)
    tables = [table(name, seeds, measure(name, seeds, out_dir, args.smoke)) for name in args.only]
    print("\n" + "\n\n".join(tables), flush=True)
    return 0


def _time(function: Callable[[], None]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
