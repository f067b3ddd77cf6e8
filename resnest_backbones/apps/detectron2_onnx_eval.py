"""Evaluation of an exported ONNX detector on the config's held-out split with the config's own evaluator
(detectron2's ``COCOEvaluator`` / ``LVISEvaluator``, or a LazyConfig's ``dataloader.evaluator``), beside the PyTorch
model's when its weights are given (``tools/eval_onnx_detectron2.py``).

The ONNX model runs through the ONNX runner (``resnest_backbones.onnx_runner``) from each image file, as a deployment
would: its reading, resizing and mask pasting are evaluated too, not only the graph. The PyTorch model runs through
detectron2's test loader, as ``tools/train_net.py --eval-only``. The tool fails when an AP differs by more than
``--max-ap-difference`` (0.3 points by default).

Command line: ``tools/eval_onnx_detectron2.py``, console entry ``resnest-eval-onnx-detectron2``, or
``python -m resnest_backbones.apps.detectron2_onnx_eval``::

    python tools/eval_onnx_detectron2.py --config-file configs/detectron2/quickstart_mask_rcnn_s14_synthetic.yaml \
            --onnx output/export/model.onnx MODEL.WEIGHTS output/quickstart_mask_rcnn_s14_synthetic/model_final.pth
"""
import argparse
import json
import os
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, Instances

from ..atomic_io import atomic_write_text
from ..cli import add_debug_option, refuse_existing_output, run
from ..onnx_runner import OnnxPredictor
from .detectron2_deployment import Deployment, load_deployment

TASKS = ("bbox", "segm")


class OnnxModel:
    """detectron2's model interface over the ONNX runner: a batch of dataset dicts in (their ``file_name`` is
    read), ``[{"instances": Instances}]`` out, at the image's size as ``DefaultPredictor`` returns them."""

    def __init__(self, predictor: OnnxPredictor):
        self.predictor = predictor

    def __call__(self, inputs: List[Dict]) -> List[Dict]:
        return [{"instances": to_instances(self.predictor(record["file_name"]))} for record in inputs]


def to_instances(prediction: Dict) -> Instances:
    """The runner's dict of numpy arrays as detectron2 ``Instances``."""
    fields = {"pred_boxes": Boxes(torch.as_tensor(prediction["pred_boxes"])),
              "scores": torch.as_tensor(prediction["scores"]),
              "pred_classes": torch.as_tensor(prediction["pred_classes"])}
    if "pred_masks" in prediction:
        fields["pred_masks"] = torch.as_tensor(prediction["pred_masks"])
    return Instances(tuple(prediction["image_size"]), **fields)


def check_settings(predictor: OnnxPredictor, deployment: Deployment, path: str) -> None:
    """Refuse an ONNX file exported with other test-time settings than the config (the two APs would not compare
    the same pre-processing)."""
    ours = (predictor.input_format, predictor.min_size_test, predictor.max_size_test)
    theirs = (deployment.input_format, deployment.min_size_test, deployment.max_size_test)
    if ours != theirs:
        raise ValueError(f"{path} was exported with (format, min size, max size) {ours} but the config tests with "
                         f"{theirs}: pass the config (and overrides) it was exported with")


def _records_loader(deployment: Deployment):
    """The test split's dataset dicts in the test loader's order, unread (the runner reads each file)."""
    records = get_detection_dataset_dicts([deployment.test_dataset], filter_empty=False)
    return build_detection_test_loader(dataset=records, mapper=lambda record: record)


def ap_summary(onnx: Dict, pytorch: Optional[Dict]) -> Tuple[List[str], float]:
    """Lines ``bbox AP: ONNX x`` (``, PyTorch y, difference d`` with ``pytorch``) and the largest difference."""
    lines, worst = [], 0.0
    for task in TASKS:
        if task not in onnx:
            continue
        line = f"{task} AP: ONNX {onnx[task]['AP']:.2f}"
        if pytorch is not None:
            difference = onnx[task]["AP"] - pytorch[task]["AP"]
            worst = max(worst, abs(difference))
            line += f", PyTorch {pytorch[task]['AP']:.2f}, difference {difference:+.2f}"
        lines.append(line)
    return lines, worst


def evaluate(args: argparse.Namespace, output_dir: str) -> Tuple[Dict, Optional[Dict]]:
    """``(ONNX results, PyTorch results or None)`` of the config's evaluator on its test dataset."""
    deployment = load_deployment(args.config_file, args.opts)
    if not deployment.test_dataset:
        raise ValueError("The config has no test dataset: set DATASETS.TEST (or dataloader.test.dataset.names)")
    predictor = OnnxPredictor(args.onnx)
    check_settings(predictor, deployment, args.onnx)
    onnx = inference_on_dataset(OnnxModel(predictor), _records_loader(deployment),
                                deployment.evaluator(os.path.join(output_dir, "onnx")))
    if not deployment.weights:
        return onnx, None
    pytorch = inference_on_dataset(deployment.load_model(), deployment.test_loader(),
                                   deployment.evaluator(os.path.join(output_dir, "pytorch")))
    return onnx, pytorch


def eval_main(args: argparse.Namespace) -> Dict:
    """What ``tools/eval_onnx_detectron2.py`` does; returns ``{"onnx": results, "pytorch": results or None}``."""
    from detectron2.utils.logger import setup_logger

    setup_logger(name="detectron2")
    if args.output:
        refuse_existing_output(os.path.join(args.output, "onnx_eval_results.json"), args.overwrite)
        onnx, pytorch = evaluate(args, args.output)
    else:
        with tempfile.TemporaryDirectory() as scratch:  # the evaluators' own files, not kept
            onnx, pytorch = evaluate(args, scratch)
    results = {"onnx": onnx, "pytorch": pytorch}
    lines, worst = ap_summary(onnx, pytorch)
    print("\n".join(lines))
    if args.output:
        atomic_write_text(os.path.join(args.output, "onnx_eval_results.json"), json.dumps(results, indent=2))
    if pytorch is not None and worst > args.max_ap_difference:
        raise RuntimeError(f"The ONNX model's AP differs from the PyTorch model's by {worst:.2f} points "
                           f"(> --max-ap-difference {args.max_ap_difference}): {'; '.join(lines)}")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate an ONNX detector written by tools/export_detectron2.py "
                                     "--format onnx on the config's test split with its evaluator, beside the "
                                     "PyTorch model when the weights are given.")
    parser.add_argument("--config-file", required=True, help="the yaml or LazyConfig the model was exported with")
    parser.add_argument("--onnx", required=True, help="the exported model.onnx")
    parser.add_argument("--output", help="folder for the evaluators' files and onnx_eval_results.json (default: "
                        "none kept)")
    parser.add_argument("--overwrite", action="store_true", help="replace onnx_eval_results.json in --output")
    parser.add_argument("--max-ap-difference", type=float, default=0.3,
                        help="fail when an ONNX AP differs from the PyTorch one by more (points; default 0.3)")
    add_debug_option(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides: MODEL.WEIGHTS x (yaml) or train.init_checkpoint=x (LazyConfig) also "
                        "evaluates the PyTorch model")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line of ``tools/eval_onnx_detectron2.py``; returns the exit status (errors are one message)."""
    return run(lambda args: eval_main(args) and None, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
