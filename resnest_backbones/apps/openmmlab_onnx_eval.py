"""Evaluate an mmdeploy ONNX file with ONNX Runtime on a model config's test split (``tools/test_openmmlab_onnx.py``).

    python tools/test_openmmlab_onnx.py DEPLOY_CFG MODEL_CFG DIR/end2end.onnx --work-dir DIR

mmdeploy's ``tools/test.py`` through its APIs: the task processor builds the config's ``test_dataloader`` (batch 1:
the exported graph takes one image) and the backend model (``openmmlab_onnx.build_onnx_model``), and mmdeploy's test
runner (mmengine's ``Runner``) evaluates it with the config's own ``test_evaluator`` (mmdet's ``CocoMetric``,
mmseg's ``IoUMetric``). The metrics are printed and written to ``DIR/onnx_metrics.json``; compare them with the
PyTorch model's from ``mim test``.
"""
import argparse
import copy
import json
import numbers
import os
import sys
from typing import Dict, Optional, Sequence

from ..cli import add_debug_option, run


def _runtime_error(error: Exception, onnx_path: str) -> Optional[Exception]:
    """A one-line ``DeployError`` for an ONNX Runtime failure a user can fix, else None."""
    from .openmmlab_onnx import DeployError
    if "Got invalid dimensions for input" in str(error):  # ONNX Runtime's message (a RuntimeError)
        detail = " ".join(str(error).split())[:200]
        return DeployError(f"{onnx_path} was exported with a static input size and this test split's images have "
                           f"another size after the test pipeline ({detail}); export with a *_dynamic.py deploy config "
                           "from configs/mmdeploy/")
    return None


def evaluate(deploy_cfg: str, model_cfg: str, onnx_path: str, work_dir: str,
             cfg_options: Optional[Dict] = None) -> Dict[str, float]:
    """Metrics of the ONNX model on ``model_cfg``'s test split (see the module docstring)."""
    from mmdeploy.apis import build_task_processor

    from .openmmlab_deploy import config_file
    from .openmmlab_onnx import build_onnx_model, load_configs
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(f"ONNX file {onnx_path} does not exist: make it with tools/deploy_openmmlab.py")
    deploy, model = load_configs(config_file(deploy_cfg, "deploy config"), config_file(model_cfg, "model config"))
    if cfg_options:
        model.merge_from_dict(cfg_options)
    task_processor = build_task_processor(model, deploy, "cpu")
    loader = copy.deepcopy(model.test_dataloader)
    loader["batch_size"] = 1
    loader["dataset"] = task_processor.build_dataset(loader["dataset"])
    onnx_model = build_onnx_model(task_processor, onnx_path)
    runner = task_processor.build_test_runner(onnx_model, work_dir, dataloader=task_processor.build_dataloader(loader))
    try:
        metrics = runner.test()
    except Exception as error:
        friendly = _runtime_error(error, onnx_path)
        if friendly is None:
            raise
        raise friendly from None
    with open(os.path.join(work_dir, "onnx_metrics.json"), "w") as handle:
        json.dump(dict(onnx=os.path.abspath(onnx_path), metrics=metrics), handle, indent=2, default=float)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description="Evaluate an mmdeploy ONNX file with ONNX Runtime on the model "
                                     "config's test split, with the config's own evaluator.")
    parser.add_argument("deploy_cfg", help="the deploy config the file was exported with")
    parser.add_argument("model_cfg", help="the model config (its test_dataloader and test_evaluator are used)")
    parser.add_argument("onnx", help="the ONNX file, e.g. DIR/end2end.onnx")
    parser.add_argument("--work-dir", default="./work_dir", help="logs and onnx_metrics.json (mmdeploy's default)")
    parser.add_argument("--device", default="cpu", help="cpu (ONNX Runtime's CPU provider)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override model config keys, e.g. "
                        "test_dataloader.dataset.data_root=data/x/")
    return add_debug_option(parser)


def _evaluate(args) -> None:
    from .openmmlab_deploy import require_deploy_stack
    if args.device != "cpu":
        raise ValueError(f"--device {args.device}: this evaluation runs ONNX Runtime's CPU provider: use --device cpu")
    require_deploy_stack()
    os.makedirs(args.work_dir, exist_ok=True)
    metrics = evaluate(args.deploy_cfg, args.model_cfg, args.onnx, args.work_dir, args.cfg_options)
    print(f"ONNX Runtime, {args.onnx}: " + ", ".join(
        f"{key}: {float(value):.4f}" if isinstance(value, numbers.Real) else f"{key}: {value}"
        for key, value in metrics.items()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status: 0, or 1 after an error printed as one message (``--debug`` shows the traceback)."""
    return run(_evaluate, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
