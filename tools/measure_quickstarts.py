#!/usr/bin/env python
"""Run every quick start with several seeds, one run at a time, and print each run's metrics and wall time with
their mean and spread: the figures the README quotes. Meant for a quiet machine (nothing else running); not part
of the test suite.

    python tools/measure_quickstarts.py                      # 4 quick starts x seeds 0 1 2, about 1 h on 2 cores
    python tools/measure_quickstarts.py --only detectron2 --seeds 0 1 2
    python tools/measure_quickstarts.py --smoke              # 10 iterations each, one seed: checks the script

Run from the repository root. The synthetic datasets are made first (timed apart) so that every run starts from the
same files; each run is then the user's command (tools/train_net.py, mim train) with only the seed added
(detectron2's SEED, mmengine's randomness.seed) and its own output folder under --out-dir.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout, any cwd

D2_CONFIG = "configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml"
MMDET_CONFIG = "configs/mmdet/mask-rcnn_s14_fpn_bn_quickstart_synthetic-coco.py"
ADE_CONFIG = "configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-ade20k-128x128.py"
CITYSCAPES_CONFIG = "configs/mmseg/resnest_s14-d8_deeplabv3_bn_quickstart_synthetic-cityscapes-128x256.py"
SMOKE_ITERATIONS = 10


def prepare_data() -> None:
    """The datasets the quick starts read, with the commands (and arguments) the README gives."""
    from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
    from resnest_backbones.apps.detectron2_train import load_training_config
    register_synthetic_datasets(load_training_config(os.path.join(ROOT, D2_CONFIG)))  # made on first use
    _run([sys.executable, "tools/make_synthetic_dataset.py", "data/synthetic_shapes", "--num-train", "200",
          "--num-val", "50", "--image-size", "128"])  # reused when already made with these arguments
    _run([sys.executable, "tools/make_synthetic_segmentation.py"])


def detectron2_run(seed: int, out: str, smoke: bool) -> List[str]:
    short = ["SOLVER.MAX_ITER", str(SMOKE_ITERATIONS)] if smoke else []
    return [sys.executable, "tools/train_net.py", "--config-file", D2_CONFIG, "SEED", str(seed), "OUTPUT_DIR", out,
            *short]


def detectron2_metrics(out: str) -> Dict[str, float]:
    with open(os.path.join(out, "eval_results.json")) as f:
        results = json.load(f)
    return {"box AP": results["bbox"]["AP"], "mask AP": results["segm"]["AP"]}


def mim_run(framework: str, config: str) -> Callable[[int, str, bool], List[str]]:
    def command(seed: int, out: str, smoke: bool) -> List[str]:
        options = [f"randomness.seed={seed}"]
        if smoke:
            options += [f"train_cfg.max_iters={SMOKE_ITERATIONS}", f"train_cfg.val_interval={SMOKE_ITERATIONS}"]
        return [sys.executable, "-m", "mim", "train", framework, config, "--work-dir", out, "--cfg-options", *options]
    return command


def mim_metrics(names: Dict[str, str], percent: bool) -> Callable[[str], Dict[str, float]]:
    """The last validation row mmengine logged (``<work_dir>/<time>/vis_data/scalars.json``)."""
    def read(out: str) -> Dict[str, float]:
        rows = []
        for path in sorted(glob.glob(os.path.join(out, "*", "vis_data", "scalars.json"))):
            with open(path) as f:
                rows += [json.loads(line) for line in f]
        last = [row for row in rows if all(key in row for key in names.values())][-1]
        return {label: last[key] * (100 if percent else 1) for label, key in names.items()}
    return read


QUICK_STARTS = {
    "detectron2": (detectron2_run, detectron2_metrics),
    "mmdet": (mim_run("mmdet", MMDET_CONFIG),
              mim_metrics({"bbox mAP": "coco/bbox_mAP", "segm mAP": "coco/segm_mAP"}, percent=True)),
    "mmseg-ade20k": (mim_run("mmseg", ADE_CONFIG), mim_metrics({"mIoU": "mIoU"}, percent=False)),
    "mmseg-cityscapes": (mim_run("mmseg", CITYSCAPES_CONFIG), mim_metrics({"mIoU": "mIoU"}, percent=False)),
}


def _run(command: List[str], log: str = None) -> float:
    """Run ``command`` at the repository root (output to ``log`` if given); return its wall time in seconds."""
    start = time.perf_counter()
    with open(log, "w") if log else open(os.devnull, "w") as out:
        process = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}" + (f"\nsee {log}" if log else ""))
    return time.perf_counter() - start


def summary(values: List[float]) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    return (f"{mean:.2f} +- {statistics.stdev(values):.2f} (sample std; min {min(values):.2f}, "
            f"max {max(values):.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=list(QUICK_STARTS), default=list(QUICK_STARTS))
    parser.add_argument("--out-dir", default="work_dirs/measure_quickstarts", help="one folder per run (and log)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_ITERATIONS} iterations per run: checks that the script works, measures nothing")
    args = parser.parse_args()
    os.chdir(ROOT)  # the quick starts' data roots are relative to the repository root
    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)

    print(f"making the datasets: {_time(prepare_data):.0f} s (not counted below)", flush=True)
    for name in args.only:
        command, read_metrics = QUICK_STARTS[name]
        runs = []
        for seed in args.seeds:
            out = os.path.join(out_dir, f"{name}_seed{seed}")
            seconds = _run(command(seed, out, args.smoke), log=out + ".log")
            metrics = read_metrics(out)
            runs.append(dict(metrics, **{"minutes": seconds / 60}))
            shown = ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items())
            print(f"{name} seed {seed}: {shown}", flush=True)
        for key in runs[0]:
            print(f"{name} {key} over seeds {args.seeds}: {summary([run[key] for run in runs])}", flush=True)
    return 0


def _time(function: Callable[[], None]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
